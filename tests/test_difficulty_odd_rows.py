"""Odd rows in the difficulty stage (issue 17 part 3): a null question, a 10 MB question and a
Latin-1 CSV. Each row is rejected with a reason before the policy sees it, or the command exits 2
naming the line; no row is lost or written twice."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tasks.curate import clean, decontaminate, questions
from tasks.curate.difficulty import DifficultyParams, difficulty
from tasks.curate.io import CurateInputError, _check_utf8, scan


class RecordingPolicy:
    """Answers every question right once in k; records the questions it was asked."""

    def __init__(self):
        self.asked: list[str] = []

    def sample(self, questions, k):
        self.asked += questions
        return [["<answer>2</answer>"] + ["<answer>no</answer>"] * (k - 1) for _ in questions]


def verify(item, response):
    return 1.0 if response == "<answer>2</answer>" else 0.0


def run(tmp_path, rows, **params):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    policy = RecordingPolicy()
    report = difficulty(tmp_path / "in.jsonl", tmp_path / "out", DifficultyParams(k=4, batch_size=8, chunk_size=16, **params),
                        policy, verify)
    kept = pl.read_parquet(tmp_path / "out" / "kept.parquet")
    rejected = pl.read_parquet(tmp_path / "out" / "rejected.parquet")
    return report, kept, rejected, policy


def test_a_null_question_is_rejected_and_every_other_row_graded(tmp_path):
    rows = [{"id": i, "question": f"What is {i}+{i}?", "answer": "2"} for i in range(50)]
    rows[35]["question"] = None
    rows[36]["question"] = "   "
    rows[37]["answer"] = None
    report, kept, rejected, policy = run(tmp_path, rows)
    assert report["rows_in"] == 50 and report["kept"] == 47
    assert dict(zip(rejected["id"], rejected["reason"])) == {35: "empty_question", 36: "empty_question", 37: "empty_answer"}
    assert rejected["pass_rate"].to_list() == [None, None, None]
    assert sorted(kept["id"].to_list()) == [i for i in range(50) if i not in (35, 36, 37)]
    assert kept["pass_rate"].to_list() == [0.25] * 47
    assert len(policy.asked) == 47 and None not in policy.asked
    assert report["passes_histogram"] == {"0/4": 0, "1/4": 47, "2/4": 0, "3/4": 0, "4/4": 0}


def test_a_task_row_needs_no_answer(tmp_path):
    rows = [{"question": "Sort: b a", "answer": None, "task": "word_sorting"},
            {"question": "What is 1+1?", "answer": None, "task": None}]
    _, kept, rejected, _ = run(tmp_path, rows)
    assert kept["task"].to_list() == ["word_sorting"]
    assert rejected["reason"].to_list() == ["empty_answer"]


def test_a_10_mb_question_is_rejected_before_the_policy_sees_it(tmp_path):
    rows = [{"id": i, "question": f"What is {i}+{i}?", "answer": "2"} for i in range(5)]
    rows[3]["question"] = "What is 1+1? " * 800_000  # 10.4 MB
    report, kept, rejected, policy = run(tmp_path, rows)
    assert rejected["id"].to_list() == [3] and rejected["reason"].to_list() == ["long_question"]
    assert kept["id"].to_list() == [0, 1, 2, 4]
    assert max(map(len, policy.asked)) < 100
    assert report["by_reason"] == {"long_question": 1}


def test_the_question_bound_is_a_param_with_a_range():
    assert DifficultyParams().max_question_chars == 4096
    from tasks.config import ParamsError

    with pytest.raises(ParamsError, match=r"difficulty.max_question_chars = 0: allowed: an integer >= 1"):
        DifficultyParams(max_question_chars=0)


def test_a_latin1_csv_is_refused_naming_the_line_before_any_row_is_graded(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("question,answer\nWhat is 2+2?,4\nCaf\u00e9: what is 1+2?,3\n".encode("latin-1"))
    policy = RecordingPolicy()
    with pytest.raises(CurateInputError, match=r"l\.csv: line 3 is not UTF-8 \(byte 0xe9, byte 4 of the line\)"):
        difficulty(path, tmp_path / "out", DifficultyParams(k=4), policy, verify)
    assert policy.asked == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("main", [clean.main, decontaminate.main, questions.main])
def test_every_curate_stage_names_a_non_utf8_line(tmp_path, capsys, main):
    path = tmp_path / "l.jsonl"
    path.write_bytes(b'{"question": "What is 1+1?", "answer": "2"}\n{"question": "Caf\xe9 au lait", "answer": "2"}\n')
    with pytest.raises(SystemExit) as e:
        main(["--input", str(path), "--output", str(tmp_path / "out")])
    assert e.value.code == 2
    assert f"{path}: line 2 is not UTF-8 (byte 0xe9, byte 18 of the line)" in capsys.readouterr().err


@pytest.mark.parametrize("data, block, where", [
    (b"ab\ncd\xe9f\n", 1 << 20, "line 2 is not UTF-8 (byte 0xe9, byte 3 of"),
    ("ab\n".encode() * 10 + "x\u00e9".encode() + b"\xff", 4, "line 11 is not UTF-8 (byte 0xff, byte 4 of"),  # across blocks
    (b"ok\nab\xc3", 2, "line 2 is not UTF-8 (byte 0xc3, byte 3 of"),  # a character cut off at the end
])
def test_utf8_check_finds_the_line_across_blocks(tmp_path, data, block, where):
    (tmp_path / "f.csv").write_bytes(data)
    with pytest.raises(CurateInputError, match=where.replace("(", r"\(")):
        _check_utf8(tmp_path / "f.csv", block)


def test_utf8_split_across_blocks_is_fine(tmp_path):
    (tmp_path / "f.csv").write_bytes(("question,answer\n" + "\u00e9\u20ac,1\n" * 7).encode())
    _check_utf8(tmp_path / "f.csv", 3)
    assert scan(tmp_path / "f.csv").collect()["question"].to_list() == ["\u00e9\u20ac"] * 7
