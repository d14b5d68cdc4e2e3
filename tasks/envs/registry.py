"""Every registered task by name, configured with the run's ``envs`` settings.

    from tasks.envs.registry import get_task
    task = get_task("code_io", envs)      # envs: tasks.envs.params.EnvParams (None: the defaults)

Importing this module imports every task module (each registers its tasks in
``tasks.envs.base.TASKS``), so a stage that looks tasks up by name depends on all of them, and the
DAG (which follows imports) sees that.
"""

from __future__ import annotations

from tasks.envs import arithmetic, code_tasks, math_tasks, swe, synlogic  # noqa: F401  (registers every task)
from tasks.envs.genrm import general  # noqa: F401  (open_prompt, instruct: judged by the GenRM)
from tasks.envs.base import TASKS, Task
from tasks.envs.params import EnvParams


def get_task(name: str, envs: EnvParams | None = None) -> Task:
    """The task ``name``; with ``envs``, a copy bound to those settings (tasks that have any)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {', '.join(sorted(TASKS))}")
    task = TASKS[name]
    configure = getattr(task, "configure", None)
    return configure(envs) if envs is not None and configure is not None else task


def get_tasks(names, envs: EnvParams | None = None, *, where: str = "tasks") -> dict[str, Task]:
    """``{name: get_task(name, envs)}``; an unknown name is a ValueError naming ``where`` it came from."""
    out = {}
    for name in names:
        try:
            out[name] = get_task(name, envs)
        except KeyError as e:
            raise ValueError(f"{where}: {e.args[0]}") from None
    return out
