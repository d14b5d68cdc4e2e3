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


def test_a_batch_verifies_sandboxed_answers_in_parallel_with_the_same_rewards():
    task = get_task("code_io")
    items = [{"task": "code_io", **it} for it in task.generate(3, 1, 1)]
    right = [f"<think>a</think><answer>{it['answer']}</answer>" for it in items]
    wrong = "<think>a</think><answer>print(0)</answer>"
    pairs = [(it, r) for it, r in zip(items, right)] + [(it, wrong) for it in items] + [(items[0], right[0]), (items[1], "none")]
    one, two = Scorer(EnvParams()), Scorer(EnvParams(), workers=2)
    serial = [one.score(it, r) for it, r in pairs]
    assert serial == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert two.score_many(pairs) == serial
    assert two.verified == one.verified == 6  # distinct (item, answer) pairs; the repeat and the untagged reply cost none
    assert two.score_many(pairs[:3]) == serial[:3] and two.verified == 6  # known answers are not run again
