"""Triton kernels of the M1 model, each beside a plain PyTorch reference.

Public API (shapes in each docstring): ``lightning_attn``, ``lightning_decode``, ``fused_logprobs``.
Each takes ``backend``: "auto" runs the Triton kernel where Triton can run (a CUDA device, or the
CPU interpreter with ``TRITON_INTERPRET=1``) and the reference otherwise; "triton" and "reference"
force one. Layout and names follow flash-linear-attention: ``kernels/<op>/naive.py`` holds the plain
PyTorch references (``naive_*``), ``chunk.py`` the chunked kernel for training and prefill
(``chunk_*``), ``fused_recurrent.py`` the decoding kernel (``fused_recurrent_*``);
``logprobs/fused_linear.py`` fuses the LM head's matmul with the log-softmax (``fused_linear_logprobs``).
"""

from __future__ import annotations

import os

import torch

from kernels.lightning.naive import (
    naive_chunk_lightning_attn,
    naive_recurrent_lightning_attn,
    naive_recurrent_lightning_decode,
)
from kernels.logprobs.naive import naive_logprobs

BACKENDS = ("auto", "triton", "reference")


def triton_available() -> bool:
    """True where Triton kernels can run: a CUDA device, or the CPU interpreter (TRITON_INTERPRET=1)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return torch.cuda.is_available()


def _use_triton(backend: str, x: torch.Tensor) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}")
    if backend == "reference":
        return False
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    runnable = x.is_cuda or (interpret and x.device.type == "cpu")
    if backend == "triton" and not runnable:
        raise RuntimeError(
            f"backend='triton' on a {x.device.type} tensor: Triton needs CUDA or TRITON_INTERPRET=1 on CPU"
        )
    return runnable


def _tileable(*dims: int) -> bool:
    """The Triton kernels tile head dims that are powers of two >= 16; "auto" falls back otherwise."""
    return all(d >= 16 and d & (d - 1) == 0 for d in dims)


def lightning_attn(
    q, k, v, decay, initial_state=None, output_final_state=False, cu_seqlens=None, backend="auto"
):
    """Lightning attention (MiniMax semantics: ``S_t = lambda S_{t-1} + k_t^T v_t``, ``o_t = q_t S_t``,
    ``lambda = exp(-decay)``, no 1/sqrt(d) scale).

    q, k: [B, T, H, Dk]; v: [B, T, H, Dv]; decay: [H] positive; initial_state: [B, H, Dk, Dv]
    (fp32). With ``cu_seqlens`` ([N+1] starts of N packed sequences) B must be 1 and the states
    are [N, H, Dk, Dv]. Returns ``(o [B, T, H, Dv], final_state fp32 or None)``; differentiable
    in q, k, v and initial_state.
    """
    if _use_triton(backend, q) and (backend == "triton" or _tileable(q.shape[-1], v.shape[-1])):
        from kernels.lightning.chunk import chunk_lightning_attn

        return chunk_lightning_attn(q, k, v, decay, initial_state, output_final_state, cu_seqlens)
    if cu_seqlens is None:
        o, state = naive_chunk_lightning_attn(q, k, v, decay, initial_state)
        return o, (state if output_final_state else None)
    if q.shape[0] != 1:
        raise ValueError(f"cu_seqlens needs packed inputs with B == 1, got B={q.shape[0]}")
    outs, states = [], []
    bounds = cu_seqlens.tolist()
    for i, (bos, eos) in enumerate(zip(bounds[:-1], bounds[1:])):
        h0 = None if initial_state is None else initial_state[i : i + 1]
        o, state = naive_chunk_lightning_attn(q[:, bos:eos], k[:, bos:eos], v[:, bos:eos], decay, h0)
        outs.append(o)
        states.append(state)
    return torch.cat(outs, dim=1), (torch.cat(states) if output_final_state else None)


def lightning_decode(q, k, v, state, decay, backend="auto"):
    """One decoding step: q, k [B, H, Dk], v [B, H, Dv], state [B, H, Dk, Dv] fp32 -> (o, new_state)."""
    if _use_triton(backend, q) and (backend == "triton" or _tileable(q.shape[-1], v.shape[-1])):
        from kernels.lightning.fused_recurrent import fused_recurrent_lightning_decode

        return fused_recurrent_lightning_decode(q, k, v, state, decay)
    return naive_recurrent_lightning_decode(q, k, v, state, decay)


def fused_logprobs(hidden, weight, targets, backend="auto"):
    """Per-target log-probability and entropy, logits in fp32 without materializing them.

    hidden [N, d], weight [V, d], targets [N] -> (logprobs [N] fp32, entropy [N] fp32);
    differentiable w.r.t. hidden and weight. "auto" takes the reference where a row of d values is
    not a multiple of 16 bytes (the Triton kernel loads through TMA).
    """
    row_bytes = hidden.shape[-1] * torch.promote_types(hidden.dtype, weight.dtype).itemsize
    if _use_triton(backend, hidden) and (backend == "triton" or row_bytes % 16 == 0):
        from kernels.logprobs.fused_linear import fused_linear_logprobs

        return fused_linear_logprobs(hidden, weight, targets)
    return naive_logprobs(hidden, weight, targets)


__all__ = [
    "fused_logprobs",
    "lightning_attn",
    "lightning_decode",
    "naive_chunk_lightning_attn",
    "naive_logprobs",
    "naive_recurrent_lightning_attn",
    "naive_recurrent_lightning_decode",
    "triton_available",
]
