"""The task registry: every task module registers, ``get_task`` finds each by name."""

from __future__ import annotations

import pytest


def test_every_task_module_registers_and_get_task_finds_each_family():
    from tasks.base import TASKS, get_task

    for name in ("arithmetic", "math", "humaneval", "code_io", "swe", "sudoku", "game_of_24"):
        assert get_task(name).name == name
    assert len(TASKS) >= 45
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")
