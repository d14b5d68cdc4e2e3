"""``envs``: the settings of the verifiable environments, one section for every stage that scores.

Each environment reads its own subsection (``envs.sandbox`` the limits of a sandboxed run,
``envs.math``, ``envs.code``, ``envs.swe``); a stage that verifies replies loads ``envs`` and hands
it to ``tasks.envs.base.get_task(name, envs)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tasks.config import Params, param
from tasks.envs.code_tasks import CodeParams
from tasks.envs.math_tasks import MathParams
from tasks.envs.sandbox import Limits
from tasks.envs.swe.task import SWEParams


@dataclass
class EnvParams(Params):
    """``envs``: the sandbox limits and each environment's settings."""

    SECTION: ClassVar[str] = "envs"
    sandbox: Limits = param(default_factory=Limits, help="limits of one sandboxed run (code and SWE rewards)")
    math: MathParams = param(default_factory=MathParams, help="math-verify comparison")
    code: CodeParams = param(default_factory=CodeParams, help="code tasks (HumanEval, code_io)")
    swe: SWEParams = param(default_factory=SWEParams, help="SWE repository tasks")
