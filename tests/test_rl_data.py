"""The rl_data stage on a hand-made graded folder: held-out sets from the held-out tenth at the graded
levels, rows copied from a held-out set removed while other instances of the same template stay,
anchors for the families pass@k left empty, the mix's columns and the report's counts per family."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tasks.config import UsageError
from tasks.curate.decontaminate import DecontaminateParams
from tasks.curate.rl_data import (BENCHMARK_FAMILY, MIX_COLUMNS, RLDataParams, anchor_rows, build, heldout_sets,
                                  instance_texts)
from tasks.envs.heldout import is_held_out
from tasks.envs.params import EnvParams
from tasks.envs.registry import get_task


def test_instance_text_drops_what_a_template_group_shares():
    qs = ["Sort these words: cat dog\nAnswer sorted.", "Sort these words: ant bee cow\nAnswer sorted.", "7+8="]
    groups = [("word_sorting", ""), ("word_sorting", ""), ("arithmetic", "")]
    assert instance_texts(qs, groups) == ["cat dog", "ant bee cow", "7+8="]


def _row(item, task, source, pass_rate=0.5):
    return {"id": str(item["id"]), "task": task, "source": source, "question": item["question"],
            "answer": str(item["answer"]), "metadata": json.dumps(item.get("metadata") or {}),
            "difficulty": item.get("difficulty"), "pass_rate": pass_rate}


def _code_of(family, n):
    items = [it for it in get_task("code_io").generate(60, 4, 2) if it["metadata"]["family"] == family][:n]
    assert len(items) == n
    return items


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rl_data")
    graded, out = tmp / "graded", tmp / "out"
    graded.mkdir()
    bench = [{"id": "b0", "question": "How many positive divisors does 360 have?", "answer": "24"},
             {"id": "b1", "question": "What is the remainder when 1000 is divided by 7?", "answer": "6"}]
    (tmp / "benchmark.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bench))
    arith = [it for it in get_task("arithmetic").generate(200, 5, 2) if not is_held_out(it["question"])][:6]
    dyck = [it for it in get_task("dyck_languages").generate(40, 0, 1) if not is_held_out(it["question"])][:6]
    params = RLDataParams(heldout_items=8)
    graded_tasks = pl.DataFrame({"task": ["arithmetic", "dyck_languages", "code_io", "code_io"], "difficulty": [2, 1, 1, 2]})
    held = heldout_sets(graded_tasks, params, EnvParams(), tmp / "benchmark.jsonl")
    copied = next(h for h in held if h["family"] == "arithmetic")  # a held-out question that leaked into the RL data
    curated = [{"id": "s1", "question": "Maria has 46 apples and buys 34 more. How many apples does Maria have now?",
                "answer": "80"},
               {"id": "s2", "question": "How many positive divisors does 360 have?", "answer": "24"}]  # the benchmark's
    kept = ([_row(c, "math", "curated") for c in curated] + [_row(a, "arithmetic", "generated") for a in arith]
            + [_row({**copied, "id": "leak"}, "arithmetic", "generated")] + [_row(d, "dyck_languages", "synlogic") for d in dyck])
    pl.DataFrame(kept).with_columns(pl.col("difficulty").cast(pl.Int64)).write_parquet(graded / "kept.parquet")
    code = get_task("code_io").generate(2, 3, 1)
    rejected = [{**_row(c, "code_io", "generated", 0.0), "stage": "difficulty", "reason": "too_hard"} for c in code]
    rejected += [{**_row(c, "code_io", "generated", rate), "stage": "difficulty", "reason": "too_easy"}
                 for c, rate in zip(_code_of("reverse_words", 3) + _code_of("balanced", 1), (1.0, 0.9, 1.0, 1.0))]
    pl.DataFrame(rejected).with_columns(pl.col("difficulty").cast(pl.Int64)).write_parquet(graded / "rejected.parquet")
    report = build(graded, tmp / "benchmark.jsonl", out, params, DecontaminateParams(), EnvParams())
    return out, report, held


def test_heldout_sets_come_from_the_held_out_tenth_at_the_graded_levels(built):
    out, report, held = built
    lines = [json.loads(line) for line in (out / "heldout.jsonl").read_text().splitlines()]
    assert lines == json.loads(json.dumps(held))
    families = {}
    for h in lines:
        families.setdefault(h["family"], []).append(h)
    assert sorted(families) == ["arithmetic", "code_io", "dyck_languages", BENCHMARK_FAMILY]
    for fam in ("arithmetic", "code_io", "dyck_languages"):
        assert len(families[fam]) == 8 and len({h["question"] for h in families[fam]}) == 8
        assert all(is_held_out(h["question"]) and h["task"] == fam for h in families[fam])
    assert {h["difficulty"] for h in families["arithmetic"]} == {2}
    assert [h["id"] for h in families[BENCHMARK_FAMILY]] == ["b0", "b1"]


def test_copies_of_held_out_items_are_removed_and_template_siblings_kept(built):
    out, report, _ = built
    mix = pl.read_parquet(out / "mix.parquet")
    assert tuple(mix.columns) == MIX_COLUMNS
    removed = set(pl.read_parquet(out / "rejected.parquet")["id"])
    assert removed == {"leak", "s2"}  # the copied held-out question and the benchmark's own
    assert mix.filter(pl.col("task") == "dyck_languages").height == 6  # same template, other instances
    fam = report["by_family"]
    assert fam["arithmetic"] == {"graded_kept": 7, "contaminated": 1, "rl_rows": 6, "anchors": 0, "mean_pass_rate": 0.5,
                                 "by_source": {"generated": 6}, "heldout_items": 8}
    assert fam["math"]["rl_rows"] == 1 and fam["code_io"]["heldout_items"] == 8
    assert report["rl_rows"] == mix.height == 16 and (out / "mix.png").stat().st_size > 0


def test_a_family_without_kept_rows_gets_its_easiest_too_easy_rows_as_anchors(built):
    out, report, _ = built
    code = pl.read_parquet(out / "mix.parquet").filter(pl.col("task") == "code_io")
    meta = [json.loads(m) for m in code["metadata"]]
    # family floor 2: reverse_words gets its 0.9 row and one of its 1.0 rows, balanced its only row;
    # the too-hard rows are never anchors
    assert sorted(m["family"] for m in meta) == ["balanced", "reverse_words", "reverse_words"]
    assert all(m["anchor"] for m in meta) and sorted(code["pass_rate"]) == [0.9, 1.0, 1.0]
    fam = report["by_family"]["code_io"]
    assert fam["graded_kept"] == 0 and fam["rl_rows"] == fam["anchors"] == report["anchors"] == 3
    assert fam["by_source"] == {}


def test_anchors_top_up_to_the_floor_lowest_pass_rate_first_and_floor_zero_adds_none():
    items = _code_of("reverse_words", 4)
    kept = pl.DataFrame([_row(items[0], "code_io", "generated", 0.5)]).select(MIX_COLUMNS)
    rejected = pl.DataFrame([{**_row(it, "code_io", "generated", rate), "reason": "too_easy"}
                             for it, rate in zip(items[1:], (1.0, 0.9, 1.0))])
    picked = anchor_rows(kept, rejected, 3)
    assert picked["id"].to_list() == sorted([str(items[2]["id"]), min(str(items[1]["id"]), str(items[3]["id"]))],
                                            key=lambda i: i != str(items[2]["id"]))
    assert anchor_rows(kept, rejected, 1).height == 0 and anchor_rows(kept, rejected, 0).height == 0


def test_missing_graded_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file; run the difficulty stage"):
        build(tmp_path, tmp_path / "b.jsonl", tmp_path / "out", RLDataParams(), DecontaminateParams(), EnvParams())
