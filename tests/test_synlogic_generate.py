"""The SynLogic data stage: items spread over each task's calibrated levels, verifiable, and
byte-identical when run twice."""

from __future__ import annotations

import json

import pytest

from tasks.envs.synlogic import TASKS
from tasks.envs.synlogic.generate import generate_items, main

PARAMS = """\
synlogic:
  generate:
    items_per_task: 5
    seed: 2
    tasks: [maze, word_sorting]
  difficulty:
    maze: {low: 2, high: 4}
    word_sorting: {low: 3, high: 3}
"""


def test_items_spread_over_levels_and_verify(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    main(["--params", str(params), "--output", str(tmp_path / "syn")])
    out = tmp_path / "syn" / "items.jsonl"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # 5 maze items over levels 2, 3, 4 -> 2, 2, 1; all 5 word_sorting items at level 3
    assert [(r["task"], r["difficulty"]) for r in rows] == (
        [("maze", 2)] * 2 + [("maze", 3)] * 2 + [("maze", 4)] + [("word_sorting", 3)] * 5)
    for row in rows:
        assert TASKS[row["task"]].verify(row, f"<think></think><answer>{row['answer']}</answer>") == 1.0
    first = out.read_bytes()
    main(["--params", str(params), "--output", str(tmp_path / "syn")])
    assert out.read_bytes() == first
    assert json.loads((tmp_path / "syn" / "report.json").read_text())["by_task"] == {"maze": 5, "word_sorting": 5}
    assert rows[0]["id"] == TASKS["maze"].generate(1, 2, 2)[0]["id"]


def test_uncalibrated_tasks_use_their_full_range_and_bad_names_fail(tmp_path, capsys):
    rows = generate_items({"sudoku": TASKS["sudoku"].difficulty_range}, items_per_task=6, seed=0)
    assert sorted({r["difficulty"] for r in rows}) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(KeyError, match="not a SynLogic task"):
        generate_items({"nope": (1, 2)}, items_per_task=1, seed=0)
    params = tmp_path / "params.yaml"
    for text, message in (("synlogic:\n  generate:\n    tasks: [nope]\n", "synlogic.generate.tasks = ['nope']"),
                          ("synlogic:\n  generate:\n    items: 3\n", "synlogic.generate.items: unknown key")):
        params.write_text(text)
        with pytest.raises(SystemExit) as exc:
            main(["--params", str(params), "--output", str(tmp_path / "x")])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
