"""The ``swe`` task: fix a seeded bug in a small repository with a unified diff (report section 4.1).

Instances come from ``data/swe/instances.jsonl`` (built by ``python -m tasks.swe.build`` from the
repositories in ``data/swe/projects/``): each is a project, its buggy module and the tests that
fail. The question shows the repository and the issue; the reference answer is the diff that undoes
the bug. ``verify`` applies the response's diff to a fresh copy inside the sandbox, puts the tests
back as they were, and runs them (``tasks/swe/runner.py``). Rewards (params.yaml ``swe:``): every
test passes -> ``pass``; the diff does not apply -> ``no_apply``; a file no longer compiles ->
``syntax_error``; a test that passed before the patch fails after it -> ``regression`` (negative by
default, so this task's rewards can fall below 0, unlike the [0, 1] of ``tasks.base``); otherwise
(the bug is still there) -> ``fail``.

Difficulty: 1 = one bug, the issue names the function and shows the failing assertion; 2 = one bug,
the issue names only the failing tests; 3 = two bugs in two functions, failing tests named.
"""

from __future__ import annotations

import json
import random
import re
import secrets
from functools import lru_cache
from pathlib import Path

from tasks.base import Item, extract_answer
from tasks.sandbox import Limits, load_params, run

DATA = Path(__file__).resolve().parents[2] / "data" / "swe"
RUNNER = Path(__file__).resolve().parent / "runner.py"
_DIFF_FENCE = re.compile(r"```[ \t]*(?:diff|patch)?[ \t]*\n(.*?)```", re.DOTALL)
REWARDS = {"pass": 1.0, "fail": 0.0, "no_apply": 0.0, "syntax_error": 0.0, "regression": -0.5}


def project_files(project: str) -> dict[str, str]:
    """The pristine repository: relative path -> text."""
    root = DATA / "projects" / project
    if not root.is_dir():
        raise FileNotFoundError(f"no SWE project {project!r} under {root.parent}")
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def evaluate_patch(files: dict[str, str], diff: str, *, timeout_s: float = 20.0, memory_mb: int = 512,
                   limits: Limits | None = None) -> dict:
    """Apply ``diff`` to a copy of ``files`` in the sandbox and run its tests.

    Returns the runner's report: ``{"status": "no_apply" | "syntax_error" | "ran" | "crashed", ...}``
    with ``tests`` and ``failed`` when the tests ran.
    """
    nonce = secrets.token_hex(16)
    sandbox_files = {f"repo/{path}": text for path, text in files.items()}
    sandbox_files.update({f"pristine_tests/{path[len('tests/'):]}": text
                          for path, text in files.items() if path.startswith("tests/")})
    sandbox_files["fix.diff"] = diff if diff.endswith("\n") else diff + "\n"
    r = run(RUNNER.read_text(), stdin=nonce + "\n", files=sandbox_files, timeout_s=timeout_s,
            memory_mb=memory_mb, limits=limits)
    lines = [line for line in r.stdout.splitlines() if line.startswith(f"SWE-RESULT {nonce} ")]
    if len(lines) != 1:  # killed, timed out, os._exit in the patched code, or forged extra lines
        return {"status": "crashed", "sandbox": r.status, "stderr": r.stderr[-500:]}
    return json.loads(lines[0].split(" ", 2)[2])


def outcome(report: dict, tests: list[str], passing_before: list[str]) -> str:
    """The reward key of a runner report: pass, fail, no_apply, syntax_error or regression."""
    status = report.get("status")
    if status in ("no_apply", "syntax_error"):
        return status
    if status != "ran" or not isinstance(report.get("failed"), dict) or not isinstance(report.get("tests"), list):
        return "fail"
    failed = set(report["failed"]) | (set(tests) - set(map(str, report["tests"])))
    if failed & set(passing_before):
        return "regression"
    return "fail" if failed else "pass"


def extract_diff(answer: str) -> str:
    """The diff in a fenced block of the answer, or the answer itself."""
    blocks = _DIFF_FENCE.findall(answer)
    return blocks[-1] if blocks else answer.strip() + "\n"


@lru_cache(maxsize=1)
def _instances() -> tuple[dict, ...]:
    path = DATA / "instances.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m tasks.swe.build`")
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

    def __init__(self, rewards: dict | None = None, timeout_s: float | None = None,
                 memory_mb: int | None = None) -> None:
        p = load_params("swe")
        self.rewards = {**REWARDS, **p.get("rewards", {}), **(rewards or {})}
        self.timeout_s = float(timeout_s if timeout_s is not None else p.get("timeout_s", 20.0))
        self.memory_mb = int(memory_mb if memory_mb is not None else p.get("memory_mb", 512))

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
        """The outcome key (pass, fail, no_apply, syntax_error, regression) of a response."""
        answer = extract_answer(response)
        if not answer:
            return "no_apply"
        inst = next(x for x in _instances() if x["id"] == item["metadata"]["instance"])
        files = project_files(inst["project"])
        files[inst["module"]] = inst["buggy_source"]
        report = evaluate_patch(files, extract_diff(answer), timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        return outcome(report, inst["failing"] + inst["passing"], inst["passing"])

    def verify(self, item: Item, response: str) -> float:
        return float(self.rewards[self.evaluate(item, response)])
