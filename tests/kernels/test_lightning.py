"""Lightning attention Triton kernels against an fp64 token-by-token recurrence.

Tiny shapes under the interpreter: odd lengths (1, 63, 257), several chunks, packed variable
lengths, non-zero initial states, fp32 and fp16. Tolerances: fp32 1e-5 relative (the kernel
accumulates in fp32 with exact fp32 products; seen ~1e-7), fp16 inputs 1e-2 (fp16 operands).
"""

from __future__ import annotations

import pytest
import torch

from kernels import lightning_attn, lightning_decode
from kernels.lightning.chunk import chunk_lightning_attn
from kernels.lightning.naive import naive_recurrent_lightning_attn
from tests.kernels.conftest import rel_err

TOL = {torch.float32: 1e-5, torch.float16: 1e-2}


def _inputs(B, T, H, Dk, Dv, dtype, with_h0):
    q = torch.randn(B, T, H, Dk) * 0.4
    k = torch.randn(B, T, H, Dk) * 0.4
    v = torch.randn(B, T, H, Dv)
    decay = torch.tensor([0.05, 0.6, 2.0][:H])
    h0 = torch.randn(B, H, Dk, Dv) if with_h0 else None
    leaves = [x.to(dtype).requires_grad_() for x in (q, k, v)]
    if h0 is not None:
        leaves.append(h0.requires_grad_())
    return leaves, decay


def _oracle(leaves, decay, do, dht):
    """fp64 recurrence outputs, final state and gradients of <o, do> + <S_T, dht>."""
    x64 = [x.detach().double().requires_grad_() for x in leaves]
    h0 = x64[3] if len(x64) == 4 else None
    o, ht = naive_recurrent_lightning_attn(x64[0], x64[1], x64[2], decay.double(), h0)
    ((o * do.double()).sum() + (ht * dht.double()).sum()).backward()
    return o, ht, [x.grad for x in x64]


@pytest.mark.parametrize(
    "B,T,H,Dk,Dv,chunk,dtype,with_h0",
    [
        (2, 1, 2, 16, 16, 16, torch.float32, True),
        (1, 63, 3, 16, 32, 16, torch.float32, True),
        (2, 63, 2, 32, 16, 64, torch.float32, False),
        (1, 257, 2, 16, 16, 64, torch.float32, True),
        (1, 100, 2, 16, 16, 32, torch.float16, True),
    ],
)
def test_chunk_matches_recurrence(poisoned, B, T, H, Dk, Dv, chunk, dtype, with_h0):
    leaves, decay = _inputs(B, T, H, Dk, Dv, dtype, with_h0)
    h0 = leaves[3] if with_h0 else None
    o, ht = chunk_lightning_attn(*leaves[:3], decay, h0, output_final_state=True, chunk_size=chunk)
    do, dht = torch.randn_like(o, dtype=torch.float32), torch.randn_like(ht)
    ((o.float() * do).sum() + (ht * dht).sum()).backward()
    ro, rht, rgrads = _oracle(leaves, decay, do, dht)
    tol = TOL[dtype]
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert rel_err(o, ro) < tol
    assert rel_err(ht, rht) < tol
    for name, x, g in zip("q k v h0".split(), leaves, rgrads):
        assert rel_err(x.grad, g) < tol, name


@pytest.mark.parametrize("T,chunk,with_h0", [(257, 16, True), (200, 32, False)])
def test_segmented_matches_recurrence(poisoned, monkeypatch, T, chunk, with_h0):
    """A long sequence on a device it would not fill runs as parallel segments (state pass, scan,
    chunk pass from each segment's entering state), in both directions."""
    import kernels.lightning.chunk as chunk_mod

    monkeypatch.setattr(chunk_mod, "MIN_SEGMENT", 32)
    monkeypatch.setitem(chunk_mod.CONFIG, "waves", 4)
    monkeypatch.setitem(chunk_mod.BWD_CONFIG, "waves", 2)
    segments = [chunk_mod._n_segments(T, 2, torch.device("cpu"), chunk, waves)[0] for waves in (4, 2)]
    assert segments[0] > segments[1] > 2  # the forward and the backward passes cut differently
    leaves, decay = _inputs(1, T, 2, 16, 16, torch.float32, with_h0)
    h0 = leaves[3] if with_h0 else None
    o, ht = chunk_lightning_attn(*leaves[:3], decay, h0, output_final_state=True, chunk_size=chunk)
    do, dht = torch.randn_like(o), torch.randn_like(ht)
    ((o * do).sum() + (ht * dht).sum()).backward()
    ro, rht, rgrads = _oracle(leaves, decay, do, dht)
    assert rel_err(o, ro) < 1e-5 and rel_err(ht, rht) < 1e-5
    for name, x, g in zip("q k v h0".split(), leaves, rgrads):
        assert rel_err(x.grad, g) < 1e-5, name


def test_gradient_without_final_state(poisoned):
    """The usual training call: no final state, the upstream gradient reaches o only."""
    leaves, decay = _inputs(1, 45, 2, 16, 16, torch.float32, False)
    o, ht = lightning_attn(*leaves, decay, backend="triton")
    assert ht is None
    do = torch.randn_like(o)
    (o * do).sum().backward()
    _, _, rgrads = _oracle(leaves, decay, do, torch.zeros(1, 2, 16, 16))
    for x, g in zip(leaves, rgrads):
        assert rel_err(x.grad, g) < TOL[torch.float32]


def test_varlen_matches_each_sequence(poisoned):
    lens = [1, 63, 17, 40]
    cu = torch.tensor([0, 1, 64, 81, 121], dtype=torch.int32)
    H, D = 2, 16
    leaves, decay = _inputs(1, sum(lens), H, D, D, torch.float32, False)
    h0 = torch.randn(len(lens), H, D, D, requires_grad=True)
    o, ht = lightning_attn(*leaves, decay, h0, True, cu_seqlens=cu, backend="triton")
    do, dht = torch.randn_like(o), torch.randn_like(ht)
    ((o * do).sum() + (ht * dht).sum()).backward()
    for i, (bos, eos) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
        seq = [x.detach()[:, bos:eos] for x in leaves] + [h0.detach()[i : i + 1]]
        ro, rht, rg = _oracle(seq, decay, do[:, bos:eos], dht[i : i + 1])
        assert rel_err(o[:, bos:eos], ro) < 1e-5
        assert rel_err(ht[i : i + 1], rht) < 1e-5
        for x, g in zip(leaves, rg):
            assert rel_err(x.grad[:, bos:eos], g) < 1e-5
        assert rel_err(h0.grad[i : i + 1], rg[3]) < 1e-5


def test_varlen_reference_backend_agrees(poisoned):
    cu = torch.tensor([0, 5, 29], dtype=torch.int32)
    (q, k, v), decay = _inputs(1, 29, 2, 16, 16, torch.float32, False)
    o_t, s_t = lightning_attn(q, k, v, decay, None, True, cu, backend="triton")
    o_r, s_r = lightning_attn(q, k, v, decay, None, True, cu, backend="reference")
    assert rel_err(o_t, o_r) < 1e-5 and rel_err(s_t, s_r) < 1e-5


def test_decode_steps_continue_the_prefill(poisoned):
    """Prefill 20 tokens with the chunk kernel, decode 5 with the recurrent one: same as one pass."""
    B, T, H, Dk, Dv = 3, 25, 2, 16, 32
    (q, k, v), decay = _inputs(B, T, H, Dk, Dv, torch.float32, False)
    q, k, v = q.detach(), k.detach(), v.detach()
    ro, rht = naive_recurrent_lightning_attn(q.double(), k.double(), v.double(), decay.double())
    _, state = lightning_attn(q[:, :20], k[:, :20], v[:, :20], decay, None, True, backend="triton")
    for t in range(20, T):
        o, state = lightning_decode(q[:, t], k[:, t], v[:, t], state, decay, backend="triton")
        assert rel_err(o, ro[:, t]) < 1e-5
    assert rel_err(state, rht) < 1e-5


def test_backend_switch():
    (q, k, v), decay = _inputs(1, 8, 2, 16, 16, torch.float32, False)
    with pytest.raises(ValueError, match="backend"):
        lightning_attn(q, k, v, decay, backend="cuda")
    o_r, _ = lightning_attn(q, k, v, decay, backend="reference")
    o_t, _ = lightning_attn(q, k, v, decay, backend="auto")
    assert rel_err(o_t, o_r) < 1e-5


def test_auto_falls_back_for_untileable_heads(poisoned):
    """Head dim 12: "auto" takes the reference, "triton" says why it cannot."""
    (q, k, v), decay = _inputs(1, 9, 2, 12, 12, torch.float32, False)
    o, _ = lightning_attn(q, k, v, decay, backend="auto")
    ro, _ = naive_recurrent_lightning_attn(q.double(), k.double(), v.double(), decay.double())
    assert rel_err(o, ro) < 1e-5
    with pytest.raises(ValueError, match="power of two"):
        lightning_attn(q, k, v, decay, backend="triton")


def test_rejects_bad_shapes():
    (q, k, v), decay = _inputs(1, 8, 2, 16, 16, torch.float32, False)
    with pytest.raises(ValueError, match="decay"):
        chunk_lightning_attn(q, k, v, decay[:1])
    with pytest.raises(ValueError, match="power of two"):
        chunk_lightning_attn(q[..., :12], k[..., :12], v, decay)
