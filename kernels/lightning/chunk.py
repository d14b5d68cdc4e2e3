"""Chunked Triton kernel for lightning attention (training and prefill), forward and backward.

One program owns one (sequence, head, block of value columns) and walks the sequence chunk by
chunk, carrying the fp32 state ``S [Dk, BV]`` in registers: inside a chunk of C tokens the output is
masked attention with decay ``lambda^(i-j)``, plus the carried state seen through
``lambda^(i+1) q_i``; the state then moves on by ``lambda^C``. Nothing per chunk is written to
memory but the output, so one forward reads q, k, v once and writes o once (the roofline), where
flash-linear-attention's ``chunk_simple_gla`` stores every chunk's state.

The same kernel, run backwards in time (``REVERSE``), gives the backward pass, because each input
gradient is itself a lightning attention (``do`` is the upstream gradient of ``o``):

    dq_t = sum_{s<=t} lambda^(t-s) (do_t . v_s) k_s    + lambda^(t+1) do_t S0^T      forward,  (do, v, k)
    dv_s = sum_{u>=s} lambda^(u-s) (k_s . q_u) do_u    + lambda^(T-1-s) k_s dS_T     backward, (k, q, do)
    dk_s = sum_{u>=s} lambda^(u-s) (v_s . do_u) q_u    + lambda^(T-1-s) v_s dS_T^T   backward, (v, do, q)
    dS0  = lambda * (final state of the dv pass)

so the backward is three more passes of the forward's cost (and memory traffic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Tile settings for Dk = Dv = 128 on an H200, chosen by the sweep in bench/lightning.py (docs/LOG.md,
# ### kernels), for the forward pass and for the three passes of the backward: tokens per chunk
# (the forward's serves both), the block of value columns, warps, pipeline stages, and the programs
# per multiprocessor wanted ("waves"): a sequence is cut into as many segments as it takes for
# (value blocks x sequences x heads x segments) to reach waves x the multiprocessor count.
CONFIG = {"BT": 64, "BV": 64, "num_warps": 4, "num_stages": 3, "waves": 1}
BWD_CONFIG = {"BV": 64, "num_warps": 4, "num_stages": 3, "waves": 1}
MIN_SEGMENT = 2048  # tokens; shorter segments cost more in the extra state pass than they gain


@triton.jit
def _chunk_kernel(
    q,  # [B*T, H, K] (or packed [1, sum T, H, K])
    k,  # [B*T, H, K]
    v,  # [B*T, H, V]
    o,  # [B*T, H, V]
    h0,  # [N, H, K, V] fp32 state before the first (REVERSE: after the last) token
    hs,  # [G, N, H, K, V] fp32 each segment's own contribution to the state at its far end
    ht,  # [N, H, K, V] fp32 state after the last (REVERSE: before the first) token
    decay,  # [H] fp32, lambda = exp(-decay)
    cu_seqlens,  # [N + 1] int32 sequence starts when VARLEN
    T,
    SEG,  # tokens per segment (program axis 2) when not VARLEN
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BV: tl.constexpr,
    REVERSE: tl.constexpr,
    USE_H0: tl.constexpr,
    USE_HS: tl.constexpr,
    STORE_HT: tl.constexpr,
    VARLEN: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_v, i_nh, i_g = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    G = tl.num_programs(2)
    i_n, i_h = i_nh // H, i_nh % H
    if VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T + i_g * SEG
        eos = tl.minimum(bos + SEG, i_n.to(tl.int64) * T + T)
    L = (eos - bos).to(tl.int32)
    s = tl.load(decay + i_h).to(tl.float32)

    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    # Decay between positions of one chunk is the same for every full chunk: computed once.
    if REVERSE:
        dist = o_t[None, :] - o_t[:, None]  # j - i, future tokens
    else:
        dist = o_t[:, None] - o_t[None, :]  # i - j, past tokens
    m_intra = tl.where(dist >= 0, tl.exp(-s * tl.maximum(dist, 0).to(tl.float32)), 0.0)  # [BT, BT]

    # The state entering this segment: the sequence's initial state and the contributions of the
    # segments before it (REVERSE: after it), each decayed over the full segments in between.
    b_h = tl.zeros([K, BV], dtype=tl.float32)
    p_state = o_k[:, None] * V + o_v[None, :]
    if USE_H0:
        if REVERSE:
            n_far = T - tl.minimum((i_g + 1) * SEG, T)
        else:
            n_far = i_g * SEG
        b_h += tl.load(h0 + i_nh.to(tl.int64) * K * V + p_state) * tl.exp(-s * n_far.to(tl.float32))
    if USE_HS:
        if REVERSE:
            j_lo, j_hi = i_g + 1, G
        else:
            j_lo, j_hi = 0, i_g
        for j in range(j_lo, j_hi):
            if REVERSE:
                n_between = (j - i_g - 1) * SEG
            else:
                n_between = (i_g - 1 - j) * SEG
            p_hs = hs + (j * tl.num_programs(1) + i_nh).to(tl.int64) * K * V + p_state
            b_h += tl.load(p_hs) * tl.exp(-s * n_between.to(tl.float32))

    NT = tl.cdiv(L, BT)
    for it in range(0, NT):
        if REVERSE:
            i_t = NT - 1 - it
        else:
            i_t = it
        start = i_t * BT
        c = tl.minimum(BT, L - start)  # tokens in this chunk (the last one may be short)
        m_t = o_t < c
        row = (bos + start + o_t).to(tl.int64) * H + i_h  # [BT] token-head rows
        b_q = tl.load(q + row[:, None] * K + o_k[None, :], mask=m_t[:, None], other=0.0)  # [BT, K]
        b_kt = tl.load(k + row[None, :] * K + o_k[:, None], mask=m_t[None, :], other=0.0)  # [K, BT]
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_t[:, None], other=0.0)  # [BT, BV]
        if REVERSE:
            # o_i sees the state of the tokens after the chunk through lambda^(c-i); k_j enters
            # the state of the chunk start through lambda^j.
            d_q = tl.exp(-s * tl.maximum(c - o_t, 0).to(tl.float32))
            d_k = tl.exp(-s * o_t.to(tl.float32))
        else:
            d_q = tl.exp(-s * (o_t + 1).to(tl.float32))
            d_k = tl.exp(-s * tl.maximum(c - 1 - o_t, 0).to(tl.float32))
        # The per-row decays go to the rows of q S and of v, so q and k^T feed the products
        # straight from shared memory (k^T as the left operand of the state update too).
        b_o = tl.dot(b_q, b_h.to(b_q.dtype), input_precision=PRECISION) * d_q[:, None]  # [BT, BV]
        b_s = tl.dot(b_q, b_kt, input_precision=PRECISION) * m_intra  # [BT, BT]
        b_o = tl.dot(b_s.to(b_v.dtype), b_v, acc=b_o, input_precision=PRECISION)
        tl.store(o + row[:, None] * V + o_v[None, :], b_o.to(o.dtype.element_ty), mask=m_t[:, None])
        b_vd = (b_v * d_k[:, None]).to(b_v.dtype)
        b_h = tl.dot(b_kt, b_vd, acc=b_h * tl.exp(-s * c.to(tl.float32)), input_precision=PRECISION)
    if STORE_HT:
        # The last segment (REVERSE: the first) ends where the sequence does.
        if REVERSE:
            at_end = i_g == 0
        else:
            at_end = i_g == G - 1
        if at_end:
            tl.store(ht + i_nh.to(tl.int64) * K * V + p_state, b_h)


@triton.jit
def _segment_state_kernel(
    k,  # [B*T, H, K]
    v,  # [B*T, H, V]
    hs,  # [G, B, H, K, V] fp32: each segment's own contribution to the state at its far end
    decay,
    T,
    SEG,
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BT: tl.constexpr,
    BV: tl.constexpr,
    REVERSE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # Program axis 2 runs over the G - 1 segments whose contribution another segment needs: all
    # but the last (REVERSE: all but the first).
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    if REVERSE:
        i_g = tl.program_id(2) + 1
    else:
        i_g = tl.program_id(2)
    i_n, i_h = i_nh // H, i_nh % H
    bos = i_n.to(tl.int64) * T + i_g * SEG
    L = tl.minimum(SEG, T - i_g * SEG)
    s = tl.load(decay + i_h).to(tl.float32)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    b_h = tl.zeros([K, BV], dtype=tl.float32)
    for start in range(0, L, BT):
        m_t = (start + o_t) < L
        row = (bos + start + o_t).to(tl.int64) * H + i_h
        b_kt = tl.load(k + row[None, :] * K + o_k[:, None], mask=m_t[None, :], other=0.0)  # [K, BT]
        b_v = tl.load(v + row[:, None] * V + o_v[None, :], mask=m_t[:, None], other=0.0)  # [BT, BV]
        if REVERSE:
            w = tl.exp(-s * (start + o_t).to(tl.float32))
        else:
            w = tl.exp(-s * tl.maximum(L - 1 - start - o_t, 0).to(tl.float32))
        b_h = tl.dot(b_kt, (b_v * w[:, None]).to(b_v.dtype), acc=b_h, input_precision=PRECISION)
    tl.store(hs + (i_g * tl.num_programs(1) + i_nh).to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :], b_h)


def _n_segments(T, programs, device, chunk_size, waves):
    """Segments per sequence: enough for ``waves`` programs per multiprocessor, none shorter than
    MIN_SEGMENT tokens."""
    n_sm = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    G = min(triton.cdiv(T, MIN_SEGMENT), max(1, round(waves * n_sm / programs)))
    if G <= 1:
        return 1, T
    seg = triton.cdiv(triton.cdiv(T, G), chunk_size) * chunk_size
    return triton.cdiv(T, seg), seg


def _chunk_pass(q, k, v, decay, h0, cu_seqlens, reverse, store_state, chunk_size, cfg):
    """One pass of ``_chunk_kernel``: q, k [B, T, H, K]; v [B, T, H, V] -> (o [B, T, H, V], state).

    Without ``cu_seqlens`` a long sequence may be cut into G segments that run in parallel: first
    the own state contribution of every segment that another one needs (k and v of G - 1 segments
    read once more), then the chunk kernel per segment, which sums the contributions before it into
    its entering state.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    o = torch.empty_like(v)
    ht = q.new_empty(N, H, K, V, dtype=torch.float32) if store_state else None
    BV = min(cfg["BV"], V)
    NV = triton.cdiv(V, BV)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    meta = dict(H=H, K=K, V=V, BV=BV, REVERSE=reverse, PRECISION=precision, num_warps=cfg["num_warps"])
    G, seg = (1, T) if cu_seqlens is not None else _n_segments(T, NV * N * H, q.device, chunk_size, cfg["waves"])
    hs = None
    if G > 1:
        hs = q.new_empty(G, N, H, K, V, dtype=torch.float32)
        _segment_state_kernel[(NV, N * H, G - 1)](k, v, hs, decay, T, seg, BT=chunk_size, **meta)
    _chunk_kernel[(NV, N * H, G)](
        q, k, v, o, h0, hs, ht, decay, cu_seqlens, T, seg,
        BT=chunk_size, USE_H0=h0 is not None, USE_HS=hs is not None, STORE_HT=store_state,
        VARLEN=cu_seqlens is not None,
        num_stages=cfg["num_stages"], **meta,
    )
    return o, ht


class ChunkLightningAttn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, decay, initial_state, cu_seqlens, output_final_state, chunk_size):
        o, ht = _chunk_pass(q, k, v, decay, initial_state, cu_seqlens, False, output_final_state, chunk_size, CONFIG)
        ctx.save_for_backward(q, k, v, decay, initial_state, cu_seqlens)
        ctx.chunk_size = chunk_size
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, decay, h0, cu_seqlens = ctx.saved_tensors
        C = ctx.chunk_size
        do = do.contiguous()
        inv_lam = torch.exp(decay).view(1, -1, 1, 1)  # [1, H, 1, 1]
        h0_t = None if h0 is None else h0.transpose(-1, -2).contiguous()
        r0 = None if dht is None else (dht * inv_lam).contiguous()
        r0_t = None if r0 is None else r0.transpose(-1, -2).contiguous()
        dq, _ = _chunk_pass(do, v, k, decay, h0_t, cu_seqlens, False, False, C, BWD_CONFIG)
        dv, r_start = _chunk_pass(k, q, do, decay, r0, cu_seqlens, True, h0 is not None, C, BWD_CONFIG)
        dk, _ = _chunk_pass(v, do, q, decay, r0_t, cu_seqlens, True, False, C, BWD_CONFIG)
        dh0 = None if h0 is None else r_start / inv_lam
        return dq, dk, dv, None, dh0, None, None, None


def chunk_lightning_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    decay: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Lightning attention through the Triton kernel; see ``kernels.lightning_attn`` for shapes.

    Gradients flow to q, k, v and ``initial_state`` (and from ``final_state``), not to ``decay``
    (a fixed per-layer schedule in MiniMax).
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: expected [B, T, H, D]")
    for name, d in (("Dk", K), ("Dv", V)):
        if d < 16 or d & (d - 1):
            raise ValueError(f"{name}={d}: the Triton kernel needs a power of two >= 16")
    if decay.shape != (H,):
        raise ValueError(f"decay {tuple(decay.shape)}: expected [H]=[{H}]")
    N = B
    if cu_seqlens is not None:
        if B != 1:
            raise ValueError(f"cu_seqlens needs packed inputs with B == 1, got B={B}")
        cu_seqlens = cu_seqlens.to(device=q.device, dtype=torch.int32).contiguous()
        N = cu_seqlens.numel() - 1
    if initial_state is not None:
        if initial_state.shape != (N, H, K, V):
            raise ValueError(f"initial_state {tuple(initial_state.shape)}: expected {(N, H, K, V)}")
        initial_state = initial_state.float().contiguous()
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    decay = decay.to(device=q.device, dtype=torch.float32).detach().contiguous()
    return ChunkLightningAttn.apply(
        q, k, v, decay, initial_state, cu_seqlens, output_final_state, chunk_size or CONFIG["BT"]
    )
