"""SWE-style repository tasks: seeded bugs in small repositories, fixed by a unified diff.

``tasks.swe.task`` (the ``swe`` task, registered on import), ``tasks.swe.mutate`` (the bugs),
``tasks.swe.build`` (builds ``data/swe/instances.jsonl``), ``tasks.swe.runner`` (runs in the sandbox).
"""

from tasks.base import register
from tasks.swe.task import SWETask

register(SWETask())
