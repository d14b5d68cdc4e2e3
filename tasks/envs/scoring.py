"""Scoring sampled replies against task items, each distinct answer verified once.

    from tasks.envs.scoring import Scorer
    scorer = Scorer(envs)                       # envs: tasks.envs.params.EnvParams
    reward = scorer.score(item, response)       # item["task"] names its verifier

A task's verifier reads only the final ``<answer>`` of a response (``tasks.envs.base.Task``), so
two replies with the same final answer to the same item earn the same reward. Sampling repeats
answers often (pass@10 grading, RL groups, k-sample evaluation: a sharp policy writes the same
program ten times), and a code answer costs sandbox runs, so the reward is kept per
``(task, item id, final answer)``. A reply without an answer tag is never run.

``score_many`` scores a batch: the distinct answers not yet known are verified ``workers`` at a time
for tasks that run a sandbox (``sandboxed``), whose verifier waits on a process; the tiny default's
code answers cost 5 sandbox runs of about 0.05 s each (``bench/results/sandbox_overhead.md``).

Items may come from a file, with ``metadata`` as a JSON string; ``item_from_row`` turns such a row
back into the dict the verifiers read.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
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

    def __init__(self, envs: EnvParams | None, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"Scorer: workers must be >= 1, got {workers}")
        self.envs, self.workers = envs, workers
        self.tasks: dict[str, Any] = {}
        self.cache: dict[tuple[str, str, str], float] = {}
        self.verified = 0  # verifier calls made (the rest came from the cache)

    def task(self, name: str):
        if name not in self.tasks:
            self.tasks[name] = get_task(name, self.envs)
        return self.tasks[name]

    def score(self, item: dict[str, Any], response: str) -> float:
        """The reward of ``response`` under the verifier of ``item["task"]``."""
        return self.score_many([(item, response)])[0]

    def score_many(self, pairs: list[tuple[dict[str, Any], str]]) -> list[float]:
        """The reward of each (item, response); sandboxed verifiers run ``workers`` at a time."""
        keys = [_key(item, response) for item, response in pairs]
        todo: dict[tuple[str, str, str], tuple[dict[str, Any], str]] = {}
        for key, pair in zip(keys, pairs):
            if key is not None and key not in self.cache:
                todo.setdefault(key, pair)
        pooled = [k for k in todo if self.workers > 1 and getattr(self.task(k[0]), "sandboxed", False)]
        for key in todo:
            if key not in pooled:
                self.cache[key] = float(self.task(key[0]).verify(*todo[key]))
        if pooled:
            with ThreadPoolExecutor(self.workers) as pool:
                rewards = pool.map(lambda k: float(self.task(k[0]).verify(*todo[k])), pooled)
                self.cache.update(zip(pooled, rewards))
        self.verified += len(todo)
        return [0.0 if key is None else self.cache[key] for key in keys]


def _key(item: dict[str, Any], response: str) -> tuple[str, str, str] | None:
    """(task, item id, final answer): what a reward depends on; None without an answer tag."""
    answer = extract_answer(response)
    return None if answer is None else (item["task"], str(item["id"]), answer)
