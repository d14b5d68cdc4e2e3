"""Every math / code / SWE task in the registry: references score 1.0, corrupted answers score less."""

from __future__ import annotations

import pytest

import tasks.envs.code_tasks  # noqa: F401  (registers humaneval, code_io)
import tasks.envs.math_tasks  # noqa: F401  (registers math)
import tasks.envs.swe  # noqa: F401  (registers swe)
from tasks.envs.base import TASKS, format_reward

NAMES = ["math", "humaneval", "code_io", "swe"]


def reply(answer: str) -> str:
    return f"<think>reasoning</think><answer>{answer}</answer>"


@pytest.mark.parametrize("name", NAMES)
def test_reference_verifies_and_corruptions_fail_at_every_level(name):
    task = TASKS[name]
    lo, hi = task.difficulty_range
    for difficulty in range(lo, hi + 1):
        item = task.generate(1, seed=7, difficulty=difficulty)[0]
        assert set(item) == {"id", "question", "answer", "difficulty", "metadata"}
        assert isinstance(item["answer"], str) and item["difficulty"] == difficulty
        good = reply(item["answer"])
        assert format_reward(good) == 1.0
        assert task.verify(item, good) == 1.0, (name, difficulty)
        half = item["answer"][: len(item["answer"]) // 2]
        for bad in (reply(half), reply("wrong"), reply(""), "no tags at all"):
            assert task.verify(item, bad) <= 0.0, (name, difficulty, bad[:60])
