"""Policy losses of report section 3.1: CISPO (Eq. 4-5), the unified token mask (Eq. 6-7), GRPO, DAPO.

All three share one shape: a per-token term, a per-token mask, and a normalization that turns the
``[N, T]`` grid of terms into a scalar. Each returns ``(loss, metrics)``; the loss is minus the
objective, so an optimizer minimizing it maximizes the objective.

Clip convention (the report's, Eq. 5): the importance-sampling weight ``r = pi / pi_old`` is clipped
to ``[1 - eps_low, 1 + eps_high]``. The report sets eps_low large (no lower bound) and tunes only
eps_high. Some frameworks instead cap r at an absolute value; we do not.
"""

from __future__ import annotations

import torch

ALGORITHMS = ("cispo", "grpo", "dapo")
NORMALIZATIONS = ("token", "sample", "combined")


def token_mask(ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float) -> torch.Tensor:
    """Eq. 7's M: 0 where A>0 and r>1+eps_high, or A<0 and r<1-eps_low; else 1 (same shape as ratio)."""
    drop = ((advantages > 0) & (ratio > 1 + eps_high)) | ((advantages < 0) & (ratio < 1 - eps_low))
    return (~drop).to(ratio.dtype)


def aggregate(terms: torch.Tensor, mask: torch.Tensor, normalization: str) -> torch.Tensor:
    """Reduce per-token terms ``[N, T]`` over the response tokens (``mask`` 1) to a scalar.

    - ``"token"``: sum over all response tokens / total response tokens of the batch. With a batch of
      one group this is Eq. 4's ``1 / sum_i |o_i|``; over several groups it is DAPO's token-level loss.
    - ``"sample"``: each sequence's mean over its own tokens, then the mean over sequences (GRPO).
    - ``"combined"``: ``(token + sample) / 2``, the plain average of the two. The report (section 5)
      says only that it combines sample-level and token-level normalization to damp the weight of
      long negative samples; the equal mix is our reading, not a number from the report.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    mask = mask.to(terms.dtype)
    masked = terms * mask
    token = masked.sum() / mask.sum().clamp(min=1.0)
    if normalization == "token":
        return token
    lengths = mask.sum(dim=-1)  # [N]
    has_tokens = lengths > 0
    per_seq = masked.sum(dim=-1) / lengths.clamp(min=1.0)  # [N]
    sample = per_seq[has_tokens].sum() / has_tokens.sum().clamp(min=1)
    if normalization == "sample":
        return sample
    return 0.5 * (token + sample)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    algorithm: str,
    eps_low: float,
    eps_high: float,
    trust_region_mask: bool = False,
    normalization: str = "token",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Minus the policy objective over a minibatch; ``(loss, metrics)``.

    Args:
        logprobs: ``[N, T]`` log pi_theta of the sampled tokens (differentiable).
        old_logprobs: ``[N, T]`` log pi_theta_old of the same tokens (the behaviour policy).
        advantages: ``[N]`` per sequence (broadcast over T) or ``[N, T]`` per token.
        mask: ``[N, T]``, 1 on response tokens, 0 on prompt and padding.
        algorithm: ``"cispo"`` (Eq. 4-5: clipped, detached IS weight times A times log pi),
            ``"grpo"`` (PPO's clipped surrogate, Eq. 1 without KL; pass ``normalization="sample"`` for
            GRPO's per-sequence mean), ``"dapo"`` (the same surrogate with clip-higher, eps_high >
            eps_low, and token-level normalization).
        eps_low, eps_high: the clip range ``[1 - eps_low, 1 + eps_high]`` of r.
        trust_region_mask: multiply each token term by Eq. 7's mask (CISPO only; PPO's min already
            zeroes those gradients).
        normalization: see ``aggregate``.

    Metrics: ``is_weight_mean`` (mean r over response tokens), ``clip_fraction`` (fraction of response
    tokens with r outside the clip range), ``masked_fraction`` (fraction whose gradient is dropped:
    Eq. 7's mask for CISPO with the mask on and for the PPO surrogate, 0 for plain CISPO).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and mask "
            f"{tuple(mask.shape)} must have the same [N, T] shape"
        )
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)  # [N, 1]
    advantages = advantages.to(logprobs.dtype).expand_as(logprobs)  # [N, T]
    old_logprobs = old_logprobs.detach()
    mask_f = mask.to(logprobs.dtype)

    ratio = torch.exp(logprobs - old_logprobs)  # [N, T]
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    region = token_mask(ratio.detach(), advantages, eps_low, eps_high)  # [N, T]

    if algorithm == "cispo":
        terms = clipped.detach() * advantages * logprobs
        dropped = region if trust_region_mask else torch.ones_like(region)
        terms = terms * dropped
    else:
        if trust_region_mask:
            raise ValueError("trust_region_mask applies to cispo; the PPO surrogate masks through its min")
        terms = torch.minimum(ratio * advantages, clipped * advantages)
        dropped = region

    loss = -aggregate(terms, mask, normalization)
    n = mask_f.sum().clamp(min=1.0)
    with torch.no_grad():
        outside = ((ratio < 1 - eps_low) | (ratio > 1 + eps_high)).to(logprobs.dtype)
        metrics = {
            "is_weight_mean": float((ratio * mask_f).sum() / n),
            "clip_fraction": float((outside * mask_f).sum() / n),
            "masked_fraction": float(((1 - dropped) * mask_f).sum() / n),
        }
    return loss, metrics

