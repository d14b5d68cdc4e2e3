"""The labelled corpus generator: deterministic, copies after their originals, labels that mean
what the evaluation assumes, and the scorer's arithmetic on a hand-made result."""

from __future__ import annotations

import polars as pl

from tasks.curate.evaluate import score
from tasks.curate.minhash import dedup_key, number_keys
from tasks.curate.synth import generate


def test_corpus_is_deterministic_and_copies_follow_their_originals():
    rows, sft, bench = generate(120, seed=3)
    assert (rows, sft, bench) == generate(120, seed=3)
    pos = {r["id"]: i for i, r in enumerate(rows)}
    for r in rows:
        if r["label"] in ("dup_exact", "dup_near", "dup_paraphrase"):
            assert pos[r["of"]] < pos[r["id"]]
    d = pl.DataFrame(rows)
    text = dict(zip(d["id"], d["question"]))
    near = d.filter(pl.col("label") == "dup_near")
    orig = pl.Series([text[o] for o in near["of"]])
    keys = lambda s: pl.DataFrame({"q": s}).select(dedup_key(pl.col("q"))).to_series()  # noqa: E731
    assert (keys(near["question"]) != keys(orig)).all()  # a near copy is not an exact copy
    assert (number_keys(near["question"], True) == number_keys(orig, True)).all()  # and keeps its numbers
    labels = set(d["label"])
    assert labels == {"clean", "raw", "solution", "mc", "malformed", "dup_exact", "dup_near", "dup_paraphrase",
                      "sft_overlap", "contaminated", "multi_part", "proof", "binary", "unparseable"}
    assert d["id"].n_unique() == d.height


def test_score_arithmetic():
    corpus = pl.DataFrame({
        "id": ["a", "b", "c", "d"],
        "label": ["clean", "dup_exact", "dup_exact", "mc"],
        "expect_answer": ["1", None, None, "7"],
    })
    result = pl.DataFrame({
        "id": ["a", "b", "c", "d"],
        "reason": ["duplicate_exact", "duplicate_exact", None, None],
        "answer": ["1", "1", "1", "7"],
    })
    clean_kept = pl.DataFrame({"id": ["a", "b", "c", "d"], "answer": ["1", "1", "1", "A"]})
    table = {r["filter"]: r for r in score(result, corpus, clean_kept)}
    exact = table["dedup: exact"]
    assert (exact["flagged"], exact["true_pos"], exact["positives"]) == (2, 1, 2)
    assert exact["precision"] == 0.5 and exact["recall"] == 0.5
    assert table["questions: multiple choice rewritten"]["recall"] == 1.0
    keep = table["pipeline: rows that should stay, kept"]
    assert keep["recall"] == 0.5 and keep["precision"] == 0.5  # kept: c (a copy) and d
