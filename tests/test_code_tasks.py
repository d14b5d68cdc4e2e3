"""tasks.envs.code_tasks: HumanEval through the sandbox and generated stdin/stdout problems."""

from __future__ import annotations

import pytest

import tasks.envs.code_tasks as ct
from tasks.envs.base import TASKS, Task


def reply(answer: str) -> str:
    return f"<think>plan</think><answer>{answer}</answer>"


def test_extract_code():
    assert ct.extract_code("text\n```python\nprint(1)\n```\nmore") == "print(1)\n"
    assert ct.extract_code("```py\na\n```\n```\nb\n```") == "b\n"
    assert ct.extract_code("  print(2)  ") == "print(2)"


def test_same_output():
    assert ct.same_output("1 2 \n3\n\n", "1 2\n3")
    assert not ct.same_output("1 2\n3", "1 2 3")


def test_registered_and_deterministic():
    for name in ("humaneval", "code_io"):
        task = TASKS[name]
        assert isinstance(task, Task)
        assert task.generate(3, seed=1, difficulty=2) == task.generate(3, seed=1, difficulty=2)
        with pytest.raises(ValueError, match="outside"):
            task.generate(1, seed=0, difficulty=task.difficulty_range[1] + 1)


def test_humaneval_levels_partition_the_164_problems():
    levels = [ct.HumanEvalTask.level(p) for p in ct.HumanEvalTask.problems().values()]
    assert len(levels) == 164 and set(levels) == {1, 2, 3}
    assert all(levels.count(k) > 30 for k in (1, 2, 3))


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_humaneval_reference_passes_and_broken_fails(difficulty):
    task = TASKS["humaneval"]
    for item in task.generate(2, seed=0, difficulty=difficulty):
        problem = ct.HumanEvalTask.problems()[item["metadata"]["task_id"]]
        assert task.verify(item, reply(item["answer"])) == 1.0, item["id"]
        broken = f"```python\n{problem['prompt']}    raise NotImplementedError\n```"
        assert task.verify(item, reply(broken)) == 0.0
        assert task.verify(item, "<think>forgot the tag</think>") == 0.0


def test_humaneval_reply_without_imports_uses_the_prompts():
    # HumanEval/0's prompt imports List; a reply that defines only the function still runs
    item = {"id": "he0", "metadata": {"task_id": "HumanEval/0", "entry_point": "has_close_elements"}}
    body = ("def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
            "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n")
    assert TASKS["humaneval"].verify(item, reply(f"```python\n{body}```")) == 1.0


@pytest.mark.parametrize("family", sorted(ct._FAMILIES))
def test_each_family_reference_program_matches_its_solver(family):
    from tasks.envs.sandbox import run

    import random

    lowest = ct._FAMILIES[family][0]
    inp = ct._FAMILIES[family][2](random.Random(family), lowest)
    r = run(ct.reference_program(family), stdin=inp)
    assert r.status == "ok" and ct.same_output(r.stdout, ct._FAMILIES[family][3](inp))


def test_solvers_on_hand_computed_inputs():
    assert ct.solve_sum_divisible("5 3\n3 4 -6 9 10\n") == "6"
    assert ct.solve_reverse_words("a bb c\n") == "c bb a"
    assert ct.solve_balanced("([]{})\n") == "YES" and ct.solve_balanced("([)]\n") == "NO"
    assert ct.solve_max_subarray("5\n-2 1 -3 4 -1\n") == "4"
    assert ct.solve_count_primes("30\n") == "10"
    assert ct.solve_lis("6\n5 1 6 2 3 9\n") == "4"
    assert ct.solve_components("5 2\n1 2 4 5\n") == "3"
    assert ct.solve_fib_mod("10\n") == "55" and ct.solve_fib_mod("100\n") == str(354224848179261915075 % 1_000_000_007)
    assert ct.solve_grid_paths("3 3\n...\n.#.\n...\n") == "2"


@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_code_io_reference_passes_and_wrong_programs_fail(difficulty):
    task = TASKS["code_io"]
    item = task.generate(1, seed=2, difficulty=difficulty)[0]
    assert len(item["metadata"]["tests"]) == task.params.tests_per_item
    assert task.verify(item, reply(item["answer"])) == 1.0
    assert task.verify(item, reply("```python\nprint(0)\n```")) == 0.0


def test_code_io_program_that_hangs_scores_zero():
    task = ct.CodeIOTask(ct.CodeParams(timeout_s=1.0))
    item = task.generate(1, seed=0, difficulty=1)[0]
    assert task.verify(item, reply("```python\nwhile True:\n    pass\n```")) == 0.0


def test_partial_credit_counts_passed_tests():
    task = ct.CodeIOTask(ct.CodeParams(partial_credit=True, tests_per_item=4))
    item = task.generate(1, seed=0, difficulty=1)[0]
    # right on the first test only: hard-code its expected output
    first = item["metadata"]["tests"][0]
    outputs = {t["output"] for t in item["metadata"]["tests"]}
    hack = f"```python\nprint({first['output'].strip()!r})\n```"
    expected = sum(t["output"] == first["output"] for t in item["metadata"]["tests"]) / 4
    assert len(outputs) > 1 and task.verify(item, reply(hack)) == expected
