"""Plain PyTorch reference for per-token log-probabilities through the LM head in fp32.

This is the report's FP32 LM head (section 3.3, Figure 3): logits are computed in fp32 even when
the hidden states and the head weight are bf16, because the bf16 head is what broke the
train/inference probability agreement.
"""

from __future__ import annotations

import torch


def naive_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [N, d], weight [V, d], targets [N] (int64) -> (logprob [N] fp32, entropy [N] fp32).

    Materializes the [N, V] fp32 logits; the fused kernel must agree with it.
    """
    logits = hidden.float() @ weight.float().t()  # [N, V]
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1), entropy
