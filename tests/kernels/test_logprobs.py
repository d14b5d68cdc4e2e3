"""Fused fp32 log-probabilities and entropy against fp64 log-softmax, with both gradients.

Interpreter sizes: N and V odd, V spanning several vocabulary tiles and splits. Tolerance 1e-5
relative in fp32 (fp32 logits; seen ~1e-6); fp16 inputs also 1e-5 on the log-probs because the
logits are accumulated in fp32 from exact fp16 products (the point of the FP32 head), 1e-2 on the
gradients (cast to fp16).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kernels.logprobs.fused_linear as fused_linear
from kernels import fused_logprobs
from tests.kernels.conftest import rel_err


def _oracle(h, w, t, g_lp, g_ent):
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    logp = torch.log_softmax(h64 @ w64.t(), dim=-1)
    lp = logp.gather(-1, t[:, None]).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    ((lp * g_lp.double()).sum() + (ent * g_ent.double()).sum()).backward()
    return lp, ent, h64.grad, w64.grad


@pytest.mark.parametrize("N,V,d,dtype", [(37, 301, 32, torch.float32), (5, 97, 16, torch.float16)])
def test_fused_matches_log_softmax(poisoned, monkeypatch, N, V, d, dtype):
    monkeypatch.setattr(fused_linear, "VOCAB_CHUNK", 128)  # several backward chunks, one of them short
    h = (torch.randn(N, d) * 0.5).to(dtype).requires_grad_()
    w = (torch.randn(V, d) * 0.5).to(dtype).requires_grad_()
    t = torch.randint(0, V, (N,))
    t[0], t[-1] = 0, V - 1
    lp, ent = fused_logprobs(h, w, t, backend="triton")
    assert lp.dtype == torch.float32 and ent.dtype == torch.float32
    g_lp, g_ent = torch.randn(N), torch.randn(N)
    ((lp * g_lp).sum() + (ent * g_ent).sum()).backward()
    rlp, rent, rgh, rgw = _oracle(h, w, t, g_lp, g_ent)
    assert rel_err(lp, rlp) < 1e-5
    assert rel_err(ent, rent) < 1e-5
    gtol = 1e-5 if dtype == torch.float32 else 1e-2
    assert rel_err(h.grad, rgh) < gtol
    assert rel_err(w.grad, rgw) < gtol


def test_fp32_head_upcasts_bf16_states_exactly(poisoned):
    """bf16 hidden states with an fp32 head weight: the same as upcasting the states by hand."""
    h = torch.randn(9, 16).to(torch.bfloat16)
    w = torch.randn(50, 16)
    t = torch.randint(0, 50, (9,))
    lp, ent = fused_logprobs(h, w, t, backend="triton")
    rlp, rent = fused_logprobs(h.float(), w, t, backend="reference")
    assert rel_err(lp, rlp) < 1e-6 and rel_err(ent, rent) < 1e-6


def test_only_logprob_gradient(poisoned):
    """Entropy unused by the loss: its gradient arrives as None."""
    h = torch.randn(6, 16, requires_grad=True)
    w = torch.randn(40, 16)
    t = torch.randint(0, 40, (6,))
    lp, _ = fused_logprobs(h, w, t, backend="triton")
    lp.sum().backward()
    h_ref = h.detach().requires_grad_()
    fused_logprobs(h_ref, w, t, backend="reference")[0].sum().backward()
    assert w.grad is None
    assert rel_err(h.grad, h_ref.grad) < 1e-5


def test_rows_tma_cannot_load(poisoned):
    """d=6 in fp32 (24-byte rows): "auto" takes the reference, "triton" says why it cannot."""
    h = torch.randn(5, 6)
    w = torch.randn(30, 6)
    t = torch.randint(0, 30, (5,))
    lp, ent = fused_logprobs(h, w, t, backend="auto")
    rlp, rent = fused_logprobs(h, w, t, backend="reference")
    assert rel_err(lp, rlp) < 1e-6 and rel_err(ent, rent) < 1e-6
    with pytest.raises(ValueError, match="16 bytes"):
        fused_logprobs(h, w, t, backend="triton")


def test_tiles_fit_h200_shared_memory_for_every_operand_dtype():
    """fp32 operands at the bf16 tiles did not launch on the H200 (262,160 bytes of shared memory
    asked, 232,448 allowed). Each kernel, at the tiles chosen for its dtype at M1's d=6144, compiled
    for sm_90 in a process outside the interpreter: Triton's own allocation must fit, and bf16
    keeps the tuned tiles."""
    code = (
        "import json, torch; from kernels.logprobs.fused_linear import shared_memory_bytes as f; "
        "print(json.dumps({f'{b} {d}': f(b, getattr(torch, d)) for b in (False, True) for d in ('bfloat16', 'float32')}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    need = json.loads(out.stdout.splitlines()[-1])
    assert all(0 < b <= fused_linear.H200_SHARED_MEMORY for b in need.values()), need
    for base in (fused_linear.FWD_CONFIG, fused_linear.BWD_CONFIG):
        assert fused_linear._config(base, 6144, 2) == base
        assert fused_linear._config(base, 6144, 4)["BK"] == base["BK"] // 2
