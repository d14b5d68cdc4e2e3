"""tasks.envs.swe: seeded bugs, diffs applied in the sandbox, and every reward outcome."""

from __future__ import annotations

import json
import shutil

import pytest

import tasks.envs.swe  # noqa: F401  (registers "swe")
from tasks.envs.base import TASKS, Task
from tasks.envs.swe import build as swe_build
from tasks.envs.swe.mutate import Mutation, mutations, unified_diff
from tasks.envs.params import EnvParams
from tasks.envs.sandbox import Limits
from tasks.envs.swe.task import (DATA, SWEBuildParams, SWEParams, SWERewards, SWETask, _instances, evaluate_patch,
                                  extract_diff, outcome, project_files)

SOURCE = "def f(a, b):\n    if a < b and b == 2:\n        return a + 1\n    return b\n"


def reply(answer: str) -> str:
    return f"<think>found it</think><answer>{answer}</answer>"


def test_mutations_of_a_hand_written_function():
    found = [(m.line, m.description) for m in mutations(SOURCE)]
    assert found == [(2, "`<` -> `<=`"), (2, "`and` -> `or`"), (2, "`==` -> `!=`"), (2, "`2` -> `3`"),
                     (3, "`+` -> `-`"), (3, "`1` -> `2`")]
    m = Mutation(3, 17, 18, "-", "f", "`+` -> `-`")
    assert m.apply(SOURCE).splitlines()[2] == "        return a - 1"


def test_outcome_keys():
    tests, before = ["t.a", "t.b", "t.c"], ["t.a", "t.b"]  # t.c is the failing test of the bug
    assert outcome({"status": "ran", "tests": tests, "failed": {}}, tests, before) == "passed"
    assert outcome({"status": "ran", "tests": tests, "failed": {"t.c": "x"}}, tests, before) == "fail"
    assert outcome({"status": "ran", "tests": tests, "failed": {"t.a": "x"}}, tests, before) == "regression"
    assert outcome({"status": "ran", "tests": ["t.c"], "failed": {}}, tests, before) == "regression"  # t.a vanished
    assert outcome({"status": "no_apply"}, tests, before) == "no_apply"
    assert outcome({"status": "syntax_error"}, tests, before) == "syntax_error"
    assert outcome({"status": "crashed"}, tests, before) == "fail"


def test_extract_diff():
    assert extract_diff("```diff\n--- a/x\n+++ b/x\n```") == "--- a/x\n+++ b/x\n"
    assert extract_diff("--- a/x\n+++ b/x") == "--- a/x\n+++ b/x\n"


def test_shipped_instances_are_well_formed():
    insts = _instances()
    assert len(insts) >= 40 and len({i["id"] for i in insts}) == len(insts)
    assert {len(i["functions"]) for i in insts} == {1, 2}
    for inst in insts:
        assert inst["failing"] and not set(inst["failing"]) & set(inst["passing"])
        assert project_files(inst["project"])[inst["module"]] != inst["buggy_source"]


def test_registered_and_deterministic():
    task = TASKS["swe"]
    assert isinstance(task, Task)
    assert task.generate(4, seed=0, difficulty=2) == task.generate(4, seed=0, difficulty=2)
    assert [len(json.dumps(i)) > 0 for i in task.generate(2, seed=0, difficulty=3)] == [True, True]
    with pytest.raises(ValueError, match="outside"):
        task.generate(1, seed=0, difficulty=4)


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_reference_diff_passes_and_a_bad_diff_does_not_apply(difficulty):
    task = TASKS["swe"]
    item = task.generate(1, seed=1, difficulty=difficulty)[0]
    assert task.verify(item, reply(item["answer"])) == 1.0
    elsewhere = "```diff\n--- a/nothing.py\n+++ b/nothing.py\n@@ -1 +1 @@\n-x\n+y\n```"
    assert task.evaluate(item, reply(elsewhere)) == "no_apply"
    assert task.evaluate(item, "<think>no answer</think>") == "no_apply"


def _item_and_files(task: SWETask):
    item = task.generate(1, seed=0, difficulty=1)[0]
    inst = next(x for x in _instances() if x["id"] == item["metadata"]["instance"])
    return item, inst, project_files(inst["project"])[inst["module"]]


def test_syntax_error_regression_and_test_edits():
    task = SWETask(SWEParams(rewards=SWERewards(regression=-0.5, syntax_error=-0.25)))
    item, inst, fixed = _item_and_files(task)
    assert inst["project"] == "calendar_utils"  # top-level functions, so the sabotage below applies
    module, buggy = inst["module"], inst["buggy_source"]
    broken = fixed.replace("def ", "def (", 1)
    assert task.verify(item, reply(unified_diff(module, buggy, broken))) == -0.25
    # fix the bug but make every other top-level function raise: tests that passed now fail
    sabotaged = []
    for line in fixed.splitlines(keepends=True):
        sabotaged.append(line)
        if line.startswith("def ") and line[4:].split("(")[0] not in inst["functions"]:
            sabotaged.append("    raise RuntimeError('sabotage')\n")
    assert task.evaluate(item, reply(unified_diff(module, buggy, "".join(sabotaged)))) == "regression"
    assert task.verify(item, reply(unified_diff(module, buggy, "".join(sabotaged)))) == -0.5
    # editing the failing test away does not count: the runner restores the tests
    test_path = next(p for p in project_files(inst["project"]) if p.startswith("tests/test_"))
    test_src = project_files(inst["project"])[test_path]
    gutted = test_src.replace("self.assert", "pass  # self.assert")
    assert task.evaluate(item, reply(unified_diff(test_path, test_src, gutted))) == "fail"


def test_patched_code_that_exits_early_scores_as_a_failure():
    task = SWETask()
    item, inst, fixed = _item_and_files(task)
    exiting = "import os\nos._exit(0)\n" + fixed
    assert task.evaluate(item, reply(unified_diff(inst["module"], inst["buggy_source"], exiting))) == "fail"


def test_evaluate_patch_reports_failing_tests():
    files = project_files("roman")
    source = files["roman.py"]
    buggy = source.replace("while n >= value:", "while n > value:")
    report = evaluate_patch(files, unified_diff("roman.py", source, buggy), SWEParams(), Limits())
    assert report["status"] == "ran"
    assert set(report["failed"]) == {"tests.test_roman.TestRoman.test_to_roman",
                                     "tests.test_roman.TestRoman.test_is_valid"}


def test_build_keeps_only_caught_and_fixable_bugs(tmp_path):
    shutil.copytree(DATA / "projects" / "rpn", tmp_path / "rpn")
    envs = EnvParams(swe=SWEParams(build=SWEBuildParams(seed=0, singles_per_project=2, doubles_per_project=1)))
    insts = swe_build.build(tmp_path, envs)
    assert [len(i["functions"]) for i in insts] == [1, 1, 2]
    assert swe_build.build(tmp_path, envs) == insts
