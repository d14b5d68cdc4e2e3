"""Plain PyTorch references for MiniMax lightning attention (report section 2; BRIEF section 1).

Semantics (MiniMax, as in transformers' ``MiniMaxForCausalLM``): per head h with decay rate
``s_h > 0`` and ``lambda_h = exp(-s_h)``,

    S_t = lambda_h * S_{t-1} + k_t^T v_t        # [D_k, D_v] state, fp32
    o_t = q_t S_t                                # no 1/sqrt(d) scale, no RoPE

Three references, slow to fast:
- ``naive_recurrent_lightning_attn``: token by token, the test oracle (run it in fp64).
- ``naive_chunk_lightning_attn``: intra-block masked attention + inter-block recurrent state; what the
  Triton kernel computes, in PyTorch.
- ``naive_recurrent_lightning_decode``: one token for a batch of sequences (generation).
"""

from __future__ import annotations

import torch


def _decay_lambda(decay: torch.Tensor) -> torch.Tensor:
    return torch.exp(-decay.to(torch.float64 if decay.dtype == torch.float64 else torch.float32))


def naive_recurrent_lightning_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    decay: torch.Tensor,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-by-token recurrence. q, k: [B, T, H, Dk]; v: [B, T, H, Dv]; decay: [H].

    Returns ``(o [B, T, H, Dv], final_state [B, H, Dk, Dv])``. Computes in the dtype of the
    inputs promoted to at least fp32 (pass fp64 for the oracle).
    """
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    acc = torch.promote_types(q.dtype, torch.float32)
    lam = torch.exp(-decay.to(acc)).view(1, H, 1, 1)  # [1, H, 1, 1]
    S = (
        torch.zeros(B, H, Dk, Dv, dtype=acc, device=q.device)
        if initial_state is None
        else initial_state.to(acc)
    )
    outs = []
    for t in range(T):
        kt, vt, qt = k[:, t].to(acc), v[:, t].to(acc), q[:, t].to(acc)  # [B, H, D]
        S = lam * S + kt.unsqueeze(-1) * vt.unsqueeze(-2)  # [B, H, Dk, Dv]
        outs.append(torch.einsum("bhk,bhkv->bhv", qt, S))
    o = torch.stack(outs, dim=1) if outs else q.new_zeros(B, 0, H, Dv, dtype=acc)
    return o.to(q.dtype), S


def naive_chunk_lightning_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    decay: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    block_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunked form of ``naive_recurrent_lightning_attn`` (same signature, same result).

    Within a block of length C (positions i, j from 0): ``o_i = sum_{j<=i} lambda^(i-j) (q_i.k_j) v_j
    + lambda^(i+1) q_i S_prev``; across blocks ``S = lambda^C S_prev + sum_j lambda^(C-1-j) k_j^T v_j``.
    State and accumulation are fp32 (fp64 if the inputs are fp64).
    """
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    acc = torch.promote_types(q.dtype, torch.float32)
    s = decay.to(acc)  # [H]
    S = (
        torch.zeros(B, H, Dk, Dv, dtype=acc, device=q.device)
        if initial_state is None
        else initial_state.to(acc)
    )
    qh, kh, vh = (x.transpose(1, 2).to(acc) for x in (q, k, v))  # [B, H, T, D]
    out = torch.empty(B, H, T, Dv, dtype=acc, device=q.device)
    for start in range(0, T, block_size):
        end = min(start + block_size, T)
        C = end - start
        qb, kb, vb = qh[:, :, start:end], kh[:, :, start:end], vh[:, :, start:end]
        idx = torch.arange(C, device=q.device, dtype=acc)
        diff = idx.view(-1, 1) - idx.view(1, -1)  # [C, C], i - j
        mask = diff >= 0
        intra_decay = torch.exp(-s.view(H, 1, 1) * diff.clamp(min=0)) * mask  # [H, C, C]
        scores = qb @ kb.transpose(-1, -2) * intra_decay  # [B, H, C, C]
        q_decay = torch.exp(-s.view(H, 1, 1) * (idx + 1).view(1, -1, 1))  # [H, C, 1]
        out[:, :, start:end] = scores @ vb + (qb * q_decay) @ S
        k_decay = torch.exp(-s.view(H, 1, 1) * (C - 1 - idx).view(1, -1, 1))  # [H, C, 1]
        S = torch.exp(-s * C).view(1, H, 1, 1) * S + (kb * k_decay).transpose(-1, -2) @ vb
    return out.transpose(1, 2).to(q.dtype), S


def naive_recurrent_lightning_decode(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: torch.Tensor, decay: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step. q, k: [B, H, Dk]; v: [B, H, Dv]; state: [B, H, Dk, Dv] (fp32).

    Returns ``(o [B, H, Dv], new_state [B, H, Dk, Dv])``.
    """
    acc = torch.promote_types(state.dtype, torch.float32)
    H = q.shape[1]
    lam = torch.exp(-decay.to(acc)).view(1, H, 1, 1)
    new_state = lam * state.to(acc) + k.to(acc).unsqueeze(-1) * v.to(acc).unsqueeze(-2)
    o = torch.einsum("bhk,bhkv->bhv", q.to(acc), new_state)
    return o.to(q.dtype), new_state
