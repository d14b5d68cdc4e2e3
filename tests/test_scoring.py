"""Scorer: rewards through each task's verifier, one verification per distinct final answer of an item."""

from __future__ import annotations

import json

from tasks.envs.params import EnvParams
from tasks.envs.registry import get_task
from tasks.envs.scoring import Scorer, item_from_row


def test_each_distinct_answer_is_verified_once():
    item = {"task": "code_io", **get_task("code_io").generate(1, 0, 1)[0]}
    right = f"<think>a</think><answer>{item['answer']}</answer>"
    scorer = Scorer(EnvParams())
    rewards = [scorer.score(item, r) for r in (right, right.replace("<think>a", "<think>b"), "<answer>print(1)</answer>",
                                               right, "no tags at all")]
    assert rewards == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert scorer.verified == 2  # the right program (twice the same final answer) and the wrong one; none for no tag


def test_rows_from_files_become_items():
    item = get_task("dyck_languages").generate(1, 0, 1)[0]
    row = {**item, "task": "dyck_languages", "metadata": json.dumps(item["metadata"])}
    assert item_from_row(row)["metadata"] == item["metadata"]
    assert Scorer(None).score(item_from_row(row), item["metadata"]["solution"]) == 1.0
