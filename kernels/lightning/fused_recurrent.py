"""Recurrent Triton kernel for lightning attention decoding: one token for a batch of sequences.

A decode step is memory-bound: it reads and writes the fp32 state ``[B, H, Dk, Dv]`` (64 KiB a head
at D=128) and does two flops per byte. One program updates a ``[Dk, BV]`` slab of one head's state
and produces the matching ``BV`` outputs, so the state goes through registers once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _decode_kernel(
    q,  # [B, H, K]
    k,  # [B, H, K]
    v,  # [B, H, V]
    h,  # [B, H, K, V] fp32 state before the token
    o,  # [B, H, V]
    ht,  # [B, H, K, V] fp32 state after the token
    decay,  # [H] fp32
    H: tl.constexpr,
    K: tl.constexpr,
    V: tl.constexpr,
    BV: tl.constexpr,
):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
    i_h = i_nh % H
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    lam = tl.exp(-tl.load(decay + i_h).to(tl.float32))
    p_state = i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    b_h = tl.load(h + p_state)  # [K, BV]
    b_q = tl.load(q + i_nh * K + o_k).to(tl.float32)  # [K]
    b_k = tl.load(k + i_nh * K + o_k).to(tl.float32)  # [K]
    b_v = tl.load(v + i_nh * V + o_v).to(tl.float32)  # [BV]
    b_h = lam * b_h + b_k[:, None] * b_v[None, :]
    b_o = tl.sum(b_q[:, None] * b_h, axis=0)  # [BV]
    tl.store(ht + p_state, b_h)
    tl.store(o + i_nh * V + o_v, b_o.to(o.dtype.element_ty))


def fused_recurrent_lightning_decode(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor, decay: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step: q, k [B, H, Dk]; v [B, H, Dv]; state [B, H, Dk, Dv] fp32 -> (o, new_state)."""
    B, H, K = q.shape
    V = v.shape[-1]
    if k.shape != q.shape or v.shape[:2] != (B, H) or state.shape != (B, H, K, V):
        raise ValueError(
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, state {tuple(state.shape)}: "
            "expected q, k [B, H, Dk], v [B, H, Dv], state [B, H, Dk, Dv]"
        )
    if state.dtype != torch.float32:
        raise ValueError(f"state dtype {state.dtype}: the recurrent state is fp32")
    for name, d in (("Dk", K), ("Dv", V)):
        if d < 16 or d & (d - 1):
            raise ValueError(f"{name}={d}: the Triton kernel needs a power of two >= 16")
    q, k, v, state = q.contiguous(), k.contiguous(), v.contiguous(), state.contiguous()
    decay = decay.to(device=q.device, dtype=torch.float32).contiguous()
    o = torch.empty_like(v)
    new_state = torch.empty_like(state)
    BV = min(32, V)
    _decode_kernel[(triton.cdiv(V, BV), B * H)](
        q, k, v, state, o, new_state, decay, H=H, K=K, V=V, BV=BV, num_warps=4
    )
    return o, new_state
