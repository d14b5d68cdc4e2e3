"""Group-relative advantages (GRPO, report Eq. 2): each response is scored against its own group."""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``rewards [num_prompts, G]`` -> ``(R - mean) / (std + eps)`` per row, std with ddof=1.

    A row whose rewards are all equal carries no signal and gets 0 (also when G == 1, where the
    sample std is undefined).
    """
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [num_prompts, G], got shape {tuple(rewards.shape)}")
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards, dtype=torch.float32)
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, correction=1, keepdim=True)
    adv = (rewards - mean) / (std + eps)
    flat = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)
    return torch.where(flat, torch.zeros_like(adv), adv).to(torch.float32)
