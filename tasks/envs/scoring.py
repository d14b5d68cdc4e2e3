"""Scoring sampled replies against task items, each distinct answer verified once.

    from tasks.envs.scoring import Scorer
    scorer = Scorer(envs)                       # envs: tasks.envs.params.EnvParams
    reward = scorer.score(item, response)       # item["task"] names its verifier

A task's verifier reads only the final ``<answer>`` of a response (``tasks.envs.base.Task``), so
two replies with the same final answer to the same item earn the same reward. Sampling repeats
answers often (pass@10 grading, RL groups, k-sample evaluation: a sharp policy writes the same
program ten times), and a code answer costs sandbox runs, so the reward is kept per
``(task, item id, final answer)``. A reply without an answer tag is never run.

Items may come from a file, with ``metadata`` as a JSON string; ``item_from_row`` turns such a row
back into the dict the verifiers read.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.envs.base import extract_answer
from tasks.envs.params import EnvParams
from tasks.envs.registry import get_task


def item_from_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row (``metadata`` JSON text, as Parquet keeps it) as a task item."""
    meta = row.get("metadata")
    if isinstance(meta, str):
        meta = json.loads(meta) if meta else {}
    return {**row, "metadata": meta or {}}


class Scorer:
    """Rewards of responses to items; every distinct (task, item, final answer) verified once."""

    def __init__(self, envs: EnvParams | None) -> None:
        self.envs = envs
        self.tasks: dict[str, Any] = {}
        self.cache: dict[tuple[str, str, str], float] = {}
        self.verified = 0  # verifier calls made (the rest came from the cache)

    def task(self, name: str):
        if name not in self.tasks:
            self.tasks[name] = get_task(name, self.envs)
        return self.tasks[name]

    def score(self, item: dict[str, Any], response: str) -> float:
        """The reward of ``response`` under the verifier of ``item["task"]``."""
        answer = extract_answer(response)
        if answer is None:
            return 0.0
        key = (item["task"], str(item["id"]), answer)
        if key not in self.cache:
            self.cache[key] = float(self.task(item["task"]).verify(item, response))
            self.verified += 1
        return self.cache[key]
