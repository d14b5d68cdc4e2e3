"""SWE-style repository tasks: seeded bugs in small repositories, fixed by a unified diff.

``tasks.envs.swe.task`` (the ``swe`` task, registered on import), ``tasks.envs.swe.mutate`` (the bugs),
``tasks.envs.swe.build`` (builds ``data/swe/instances.jsonl``), ``tasks.envs.swe.runner`` (runs in the sandbox).
"""

from tasks.envs.base import register
from tasks.envs.swe.task import SWETask

register(SWETask())
