"""Triton kernels of the M1 model, each beside a plain PyTorch reference.

Public API (shapes in each docstring): ``lightning_attn``, ``lightning_decode``, ``fused_logprobs``.
Until the Triton kernels land (issue #3) these dispatch to the references.
"""

from __future__ import annotations

import os

import torch

from kernels.lightning.reference import (
    lightning_attn_chunked,
    lightning_attn_recurrent,
    lightning_decode_ref,
)
from kernels.logprobs.reference import logprobs_ref


def triton_available() -> bool:
    """True where Triton kernels can run: a CUDA device, or the CPU interpreter (TRITON_INTERPRET=1)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    return torch.cuda.is_available()


def lightning_attn(
    q, k, v, decay, initial_state=None, output_final_state=False, cu_seqlens=None, backend="auto"
):
    """Lightning attention over [B, T, H, D] inputs; returns ``(o, final_state or None)``.

    ``backend``: "auto" (Triton where it can run), "triton" or "reference".
    """
    if cu_seqlens is not None:
        raise NotImplementedError("cu_seqlens needs the Triton kernel (issue #3)")
    o, state = lightning_attn_chunked(q, k, v, decay, initial_state)
    return o, (state if output_final_state else None)


def lightning_decode(q, k, v, state, decay, backend="auto"):
    """One decoding step: q, k, v [B, H, D], state [B, H, Dk, Dv] fp32 -> (o, new_state)."""
    return lightning_decode_ref(q, k, v, state, decay)


def fused_logprobs(hidden, weight, targets, backend="auto"):
    """Per-target log-probability and entropy in fp32: hidden [N, d], weight [V, d], targets [N]."""
    return logprobs_ref(hidden, weight, targets)


__all__ = [
    "fused_logprobs",
    "lightning_attn",
    "lightning_attn_chunked",
    "lightning_attn_recurrent",
    "lightning_decode",
    "lightning_decode_ref",
    "logprobs_ref",
    "triton_available",
]
