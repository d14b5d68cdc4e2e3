"""The one interface every verifiable task implements (report section 4.1).

A task generates items ``{id, question, answer, difficulty, metadata}`` (``answer`` is a string) and
scores a full model response in [0, 1] from its final ``<answer>...</answer>``. Responses follow the
chat template's shape: ``<think>...</think>`` then ``<answer>...</answer>``.

Usage::

    from tasks.envs.base import TASKS
    task = TASKS["game_of_24"]
    items = task.generate(8, seed=0, difficulty=1)
    reward = task.verify(items[0], "<think>...</think><answer>...</answer>")
"""

from __future__ import annotations

import re
from typing import Any, Callable, Protocol, runtime_checkable

Item = dict[str, Any]

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT_RE = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.DOTALL)


def extract_answer(response: str) -> str | None:
    """The text of the last ``<answer>...</answer>`` in a response, stripped; None if there is none."""
    found = _ANSWER_RE.findall(response)
    return found[-1].strip() if found else None


def format_reward(response: str) -> float:
    """1.0 when the response is exactly one think block then one answer block, else 0.0."""
    ok = _FORMAT_RE.match(response) is not None
    return 1.0 if ok and response.count("<answer>") == 1 and response.count("<think>") == 1 else 0.0


@runtime_checkable
class Task(Protocol):
    """A family of verifiable items with a difficulty knob."""

    name: str
    #: the difficulty levels the generator accepts, lowest first (an int range's bounds inclusive)
    difficulty_range: tuple[int, int]

    def generate(self, n: int, seed: int, difficulty: int) -> list[Item]:
        """``n`` items; the same ``(n, seed, difficulty)`` gives the same items."""
        ...

    def verify(self, item: Item, response: str) -> float:
        """Reward in [0, 1] for a full response (reads its final answer tag)."""
        ...


TASKS: dict[str, Task] = {}

def register(task: Task) -> Task:
    """Add a task to the registry under its ``name``; a second task of the same name is an error."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    if not isinstance(task, Task):
        raise TypeError(f"{task!r} does not implement tasks.envs.base.Task")
    TASKS[task.name] = task
    return task


def registered(factory: Callable[[], Task]) -> Callable[[], Task]:
    """Class decorator form of ``register``: ``@registered`` on a Task class with no-arg constructor."""
    register(factory())
    return factory
