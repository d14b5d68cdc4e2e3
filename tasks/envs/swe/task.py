"""The ``swe`` task: fix a seeded bug in a small repository with a unified diff (report section 4.1).

Instances come from ``data/swe/instances.jsonl`` (built by ``python -m tasks.envs.swe.build`` from the
repositories in ``data/swe/projects/``): each is a project, its buggy module and the tests that
fail. The question shows the repository and the issue; the reference answer is the diff that undoes
the bug. ``verify`` applies the response's diff to a fresh copy inside the sandbox, puts the tests
back as they were, and runs them (``tasks/envs/swe/runner.py``). Rewards (params.yaml ``envs.swe.rewards``): every
test passes -> ``passed``; the diff does not apply -> ``no_apply``; a file no longer compiles ->
``syntax_error``; a test that passed before the patch fails after it -> ``regression`` (negative by
default, so this task's rewards can fall below 0, unlike the [0, 1] of ``tasks.envs.base``); otherwise
(the bug is still there) -> ``fail``.

Difficulty: 1 = one bug, the issue names the function and shows the failing assertion; 2 = one bug,
the issue names only the failing tests; 3 = two bugs in two functions, failing tests named.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

from tasks.config import Params, param
from tasks.envs.base import Item, extract_answer
from tasks.envs.sandbox import Limits, run
from tasks.envs.swe import runner

DATA = Path(__file__).resolve().parents[3] / "data" / "swe"
RUNNER = Path(runner.__file__)  # run in the sandbox as its main.py; imported so the DAG sees it
_DIFF_FENCE = re.compile(r"```[ \t]*(?:diff|patch)?[ \t]*\n(.*?)```", re.DOTALL)


@dataclass
class SWERewards(Params):
    """``envs.swe.rewards``: the reward of each outcome of a patch."""

    SECTION: ClassVar[str] = "envs.swe.rewards"
    passed: float = param(1.0, help="every test passes")
    fail: float = param(0.0, help="applies and compiles, but the bug's tests still fail")
    no_apply: float = param(0.0, help="the diff does not apply (git apply, then patch -p1)")
    syntax_error: float = param(0.0, help="a file no longer compiles")
    regression: float = param(-0.5, help="a test that passed before the patch fails after it")


@dataclass
class SWEBuildParams(Params):
    """``envs.swe.build``: ``python -m tasks.envs.swe.build``, the instance builder."""

    SECTION: ClassVar[str] = "envs.swe.build"
    seed: int = param(0, help="which mutations are tried first")
    singles_per_project: int = param(6, ge=1, help="one-bug instances kept per project")
    doubles_per_project: int = param(3, ge=0, help="two-bug instances (difficulty 3) per project")


@dataclass
class SWEParams(Params):
    """``envs.swe``: running a patched repository's tests and scoring the outcome."""

    SECTION: ClassVar[str] = "envs.swe"
    timeout_s: float = param(20.0, gt=0.0, help="apply + compile + the whole test suite, one sandbox run")
    memory_mb: int = param(512, ge=16, help="memory of that run")
    rewards: SWERewards = param(default_factory=SWERewards, help="reward per outcome")
    build: SWEBuildParams = param(default_factory=SWEBuildParams, help="the instance builder's settings")


def project_files(project: str) -> dict[str, str]:
    """The pristine repository: relative path -> text."""
    root = DATA / "projects" / project
    if not root.is_dir():
        raise FileNotFoundError(f"no SWE project {project!r} under {root.parent}")
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def evaluate_patch(files: dict[str, str], diff: str, params: SWEParams, limits: Limits) -> dict:
    """Apply ``diff`` to a copy of ``files`` in the sandbox and run its tests.

    Returns the runner's report: ``{"status": "no_apply" | "syntax_error" | "ran" | "crashed", ...}``
    with ``tests`` and ``failed`` when the tests ran.
    """
    nonce = secrets.token_hex(16)
    sandbox_files = {f"repo/{path}": text for path, text in files.items()}
    sandbox_files.update({f"pristine_tests/{path[len('tests/'):]}": text
                          for path, text in files.items() if path.startswith("tests/")})
    sandbox_files["fix.diff"] = diff if diff.endswith("\n") else diff + "\n"
    r = run(RUNNER.read_text(), stdin=nonce + "\n", files=sandbox_files, timeout_s=params.timeout_s,
            memory_mb=params.memory_mb, limits=limits)
    lines = [line for line in r.stdout.splitlines() if line.startswith(f"SWE-RESULT {nonce} ")]
    if len(lines) != 1:  # killed, timed out, os._exit in the patched code, or forged extra lines
        return {"status": "crashed", "sandbox": r.status, "stderr": r.stderr[-500:]}
    return json.loads(lines[0].split(" ", 2)[2])


def outcome(report: dict, tests: list[str], passing_before: list[str]) -> str:
    """The reward key of a runner report: passed, fail, no_apply, syntax_error or regression."""
    status = report.get("status")
    if status in ("no_apply", "syntax_error"):
        return status
    if status != "ran" or not isinstance(report.get("failed"), dict) or not isinstance(report.get("tests"), list):
        return "fail"
    failed = set(report["failed"]) | (set(tests) - set(map(str, report["tests"])))
    if failed & set(passing_before):
        return "regression"
    return "fail" if failed else "passed"


def extract_diff(answer: str) -> str:
    """The diff in a fenced block of the answer, or the answer itself."""
    blocks = _DIFF_FENCE.findall(answer)
    return blocks[-1] if blocks else answer.strip() + "\n"


@lru_cache(maxsize=1)
def _instances() -> tuple[dict, ...]:
    path = DATA / "instances.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m tasks.envs.swe.build`")
    with open(path) as f:
        return tuple(json.loads(line) for line in f if line.strip())


def _render(inst: dict, difficulty: int) -> str:
    files = project_files(inst["project"])
    files[inst["module"]] = inst["buggy_source"]
    listing = "\n\n".join(f"--- {path} ---\n{text}" for path, text in sorted(files.items()) if text.strip())
    failing = "\n".join(f"  {t}" for t in inst["failing"])
    if difficulty == 1:
        f0 = inst["failing"][0]
        issue = (f"`{inst['functions'][0]}` in `{inst['module']}` is wrong. These tests fail:\n{failing}\n"
                 f"The first fails with: {inst['messages'][f0]}")
    else:
        issue = f"These tests fail:\n{failing}"
    return (f"A small Python repository has a bug.\n\nIssue: {issue}\n\nRepository:\n\n{listing}\n\n"
            "Fix the bug without changing the tests. Think step by step, then put a unified diff (paths "
            "a/FILE and b/FILE relative to the repository root, as `git diff` writes them) inside "
            "<answer></answer> tags.")


class SWETask:
    """Seeded-bug repositories; the response is a unified diff, scored by running the tests."""

    name = "swe"
    difficulty_range = (1, 3)
    knobs = ("1: one bug, the issue names the function and the failing assertion; 2: one bug, failing test "
             "names only; 3: two bugs in two functions")

    def __init__(self, params: SWEParams | None = None, limits: Limits | None = None) -> None:
        self.params = params or SWEParams()
        self.limits = limits or Limits()

    def configure(self, envs) -> SWETask:
        """This task with the settings of ``envs`` (``tasks.envs.params.EnvParams``)."""
        return SWETask(envs.swe, envs.sandbox)

    def generate(self, n: int, seed: int, difficulty: int) -> list[Item]:
        lo, hi = self.difficulty_range
        if not lo <= difficulty <= hi:
            raise ValueError(f"{self.name}: difficulty {difficulty} outside [{lo}, {hi}]")
        bugs = 2 if difficulty == 3 else 1
        pool = [inst for inst in _instances() if len(inst["functions"]) == bugs]
        random.Random(f"{self.name}|{seed}|{difficulty}").shuffle(pool)
        items = []
        for i in range(n):
            inst = pool[i % len(pool)]
            items.append({
                "id": f"{self.name}-d{difficulty}-s{seed}-{i}", "question": _render(inst, difficulty),
                "answer": inst["fix_diff"], "difficulty": difficulty,
                "metadata": {"instance": inst["id"], "project": inst["project"], "module": inst["module"],
                             "failing": inst["failing"], "passing": inst["passing"]},
            })
        return items

    def evaluate(self, item: Item, response: str) -> str:
        """The outcome key (passed, fail, no_apply, syntax_error, regression) of a response."""
        answer = extract_answer(response)
        if not answer:
            return "no_apply"
        inst = next(x for x in _instances() if x["id"] == item["metadata"]["instance"])
        files = project_files(inst["project"])
        files[inst["module"]] = inst["buggy_source"]
        report = evaluate_patch(files, extract_diff(answer), self.params, self.limits)
        return outcome(report, inst["failing"] + inst["passing"], inst["passing"])

    def verify(self, item: Item, response: str) -> float:
        return float(getattr(self.params.rewards, self.evaluate(item, response)))
