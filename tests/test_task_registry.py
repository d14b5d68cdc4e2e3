"""The task registry: every task module registers, ``get_task`` finds each by name."""

from __future__ import annotations

import pytest


def test_every_task_module_registers_and_get_task_finds_each_family():
    from tasks.envs.base import TASKS
    from tasks.envs.registry import get_task

    for name in ("arithmetic", "math", "humaneval", "code_io", "swe", "sudoku", "game_of_24"):
        assert get_task(name).name == name
    assert len(TASKS) >= 45
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")


def test_get_task_binds_the_envs_settings():
    from tasks.envs.params import EnvParams
    from tasks.envs.registry import get_task

    envs = EnvParams.from_mapping({"code": {"timeout_s": 2.5}, "math": {"timeout_s": 1.5},
                                   "swe": {"rewards": {"regression": -1.0}}, "sandbox": {"memory_mb": 300}})
    code = get_task("code_io", envs)
    assert code.params.timeout_s == 2.5 and code.limits.memory_mb == 300
    assert get_task("math", envs).params.timeout_s == 1.5
    assert get_task("swe", envs).params.rewards.regression == -1.0
    assert get_task("code_io").params.timeout_s == 10.0  # the registered instance keeps the defaults
    assert get_task("sudoku", envs) is get_task("sudoku")  # nothing to bind
