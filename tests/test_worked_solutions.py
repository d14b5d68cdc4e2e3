"""Worked solutions (``metadata["solution"]``, what SFT imitates): every one is in the reply format
and earns the task's full reward, at every level of every task that writes them."""

from __future__ import annotations

import pytest

from tasks.envs.base import format_reward
from tasks.envs.registry import get_task

WITH_SOLUTIONS = ["arithmetic", "math", "code_io", "boolean_expressions", "web_of_lies", "dyck_languages",
                  "object_counting", "object_properties", "navigation"]


@pytest.mark.parametrize("name", WITH_SOLUTIONS)
def test_solutions_are_formatted_and_correct_at_every_level(name):
    task = get_task(name)
    lo, hi = task.difficulty_range
    for level in range(lo, min(hi, 5) + 1):
        for item in task.generate(3 if name == "code_io" else 12, seed=11, difficulty=level):
            solution = item["metadata"]["solution"]
            assert format_reward(solution) == 1.0, solution
            assert task.verify(item, solution) == 1.0, (level, solution)


def test_solutions_show_their_steps():
    assert get_task("dyck_languages").generate(1, 0, 1)[0]["metadata"]["solution"] == \
        "<think>(, -, (, ((, (, ((</think><answer>) )</answer>"
    item = get_task("boolean_expressions").generate(1, 0, 1)[0]
    assert item["question"].startswith("Evaluate the Boolean expression: ((True and not False) and not True)")
    assert item["metadata"]["solution"] == ("<think>not False=True; True and True=True; not True=False; "
                                            "True and False=False</think><answer>False</answer>")
    word = get_task("math").generate(1, 0, 2)[0]
    assert word["metadata"]["family"] == "word" and "<think>9*10=90, 90-7=83, 83+4*10=123</think>" in word["metadata"]["solution"]
