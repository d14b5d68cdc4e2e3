"""DAPO's two rollout-side techniques the report keeps (section 3.1), dynamic sampling and the
overlong length penalty (Yu et al., 2025), and the cut of a batch into minibatches of whole groups."""

from __future__ import annotations

import torch


def informative_groups(rewards: torch.Tensor) -> torch.Tensor:
    """``rewards [num_prompts, G]`` -> bool ``[num_prompts]``: True where rewards are not all equal.

    Dynamic sampling keeps only these groups: a group whose responses all score the same has zero
    advantage everywhere and contributes no gradient.
    """
    rewards = torch.as_tensor(rewards)
    return ~(rewards == rewards[:, :1]).all(dim=1)


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int, factor: float) -> torch.Tensor:
    """DAPO's soft overlong punishment, added to the task reward.

    0 for ``length <= max_len - buffer``; falls linearly to ``-factor`` over the last ``buffer``
    tokens (``factor * (max_len - buffer - length) / buffer``); ``-factor`` beyond ``max_len``.
    ``buffer == 0`` turns it off.
    """
    lengths = torch.as_tensor(lengths, dtype=torch.float32)
    if buffer <= 0:
        return torch.zeros_like(lengths)
    if buffer > max_len:
        raise ValueError(f"overlong buffer ({buffer}) must not exceed max_len ({max_len})")
    soft = (max_len - buffer - lengths) / buffer
    return factor * soft.clamp(min=-1.0, max=0.0)


class GroupBatch:
    """Accumulates informative groups across sampling rounds until ``target`` groups are held.

    ``add`` takes one round's groups and their rewards; ``full`` says when to stop. Groups beyond the
    target are dropped so every step trains on the same number of prompts. When the round bound is
    reached first, ``finish`` tops the batch up with the uninformative groups it set aside: their
    advantages are 0, so they add no gradient, and every rank of a data-parallel run keeps the same
    number of sequences (DeepSpeed needs the same number of optimizer steps everywhere).
    """

    def __init__(self, target: int, dynamic: bool):
        self.target = target
        self.dynamic = dynamic
        self.groups: list = []
        self.reserve: list = []
        self.dropped = 0

    def add(self, groups: list, rewards: torch.Tensor) -> None:
        keep = informative_groups(rewards) if self.dynamic else torch.ones(len(groups), dtype=torch.bool)
        for g, k in zip(groups, keep.tolist()):
            if not k:
                self.dropped += 1
                self.reserve.append(g)
            elif len(self.groups) < self.target:
                self.groups.append(g)

    @property
    def full(self) -> bool:
        return len(self.groups) >= self.target

    def finish(self) -> tuple[list, int]:
        """``(groups, filled)``: the batch, topped up to ``target`` from the reserve (``filled`` of them)."""
        filled = min(self.target - len(self.groups), len(self.reserve))
        return self.groups + self.reserve[len(self.reserve) - filled :], filled


def group_minibatches(num_groups: int, group_size: int, updates: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Sequence indices of ``updates`` minibatches, each holding whole prompt groups in a shuffled order.

    Group ``j`` is sequences ``j * group_size .. (j + 1) * group_size - 1`` (``pack``'s layout). A
    group's advantages sum to zero, so every minibatch's do too: a minibatch that split groups would
    push all its replies up or down together (advantage sums of +-4 in 32 replies of 8-reply groups).
    """
    if num_groups % updates:
        raise ValueError(f"{num_groups} prompt groups do not split into {updates} minibatches of whole groups")
    order = torch.randperm(num_groups, generator=generator)  # [num_groups]
    seqs = order[:, None] * group_size + torch.arange(group_size)  # [num_groups, G]
    return list(seqs.reshape(-1).tensor_split(updates))
