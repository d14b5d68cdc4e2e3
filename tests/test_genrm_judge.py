"""The generative judge on tiny real models: malformed verdicts counted and never scored, position-swap
consistency, a Swiss round under a trained judge, the online judge's recalibration, the stage end to
end (report section 4.2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.envs.genrm.data import Example, write_sft_jsonl
from tasks.envs.genrm.evaluate import pair_accuracy
from tasks.envs.genrm.general import OPEN_PROMPT, choose_references
from tasks.envs.genrm.judge import Judge
from tasks.envs.genrm.monitor import Judged
from tasks.envs.genrm.params import GenRMParams, JudgeParams, SwissParams
from tasks.envs.genrm.swiss import judge_play, swiss

ROOT = Path(__file__).resolve().parent.parent
RANK = {"bad": 0, "ok": 1, "good": 2}
TINY_LLAMA = {"arch": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256}


def _sign(x):
    return (x > 0) - (x < 0)


def _word_pairs() -> list[Example]:
    """Every ordered pair of three answers of known order, bad < ok < good."""
    return [Example("pair", "words", "pick one.", a, b, _sign(RANK[a] - RANK[b]), f"A {RANK[a]}, B {RANK[b]}")
            for a in RANK for b in RANK]


def _train(tmp: Path, examples: list[Example], steps: int) -> Path:
    from tasks.envs.genrm.finetune import train_judge

    p = GenRMParams.from_mapping({"train": {"model": TINY_LLAMA, "vocab_size": 300, "steps": steps, "batch_size": 18,
                                            "lr": 3e-3, "warmup_steps": 2}})
    return train_judge(p, write_sft_jsonl(examples * 2, tmp / "train.jsonl"), tmp / "judge")


@pytest.fixture(scope="module")
def word_judge(tmp_path_factory) -> Judge:
    """A tiny llama trained to compare bad < ok < good in either position (about 20 s on one core)."""
    return Judge.load(_train(tmp_path_factory.mktemp("word_judge"), _word_pairs(), 80), JudgeParams(batch_size=4))


def test_a_random_judge_writes_malformed_verdicts_that_are_counted_and_never_scored(tmp_path, caplog):
    from model.tokenizer import train_tokenizer
    from tasks.train.policy import build_policy

    tok = train_tokenizer(["<answer>1</answer> A B pick one."] * 4, 300, tmp_path / "tok")
    judge = Judge(build_policy({"arch": "m1", "preset": "tiny"}, tok), tok, JudgeParams(batch_size=3))
    verdicts = judge.grade(["1+1="] * 5, ["2"] * 5, ["<answer>2</answer>"] * 5)
    assert all(v.value is None for v in verdicts) and judge.stats.malformed == 5 and judge.stats.prompts == 5
    assert "malformed grade verdict" in caplog.text and sum(judge.stats.reasons.values()) == 5
    bound = OPEN_PROMPT.with_judge(judge, GenRMParams().general)
    item = dict(OPEN_PROMPT.generate(1, seed=0, difficulty=1)[0], answer="bees make honey.")
    rewards = bound.verify_batch([item] * 3, ["<think>x</think><answer>bees can sting.</answer>"] * 2 + ["no tag"])
    assert rewards == [None, None, 0.0]  # unscored (malformed), unscored, and no answer: 0 by rule
    assert np.isnan(bound.verify(item, "<answer>bees can sting.</answer>"))


def test_a_trained_tiny_judge_is_consistent_under_position_swap(word_judge):
    pairs = _word_pairs()
    report = pair_accuracy(word_judge, pairs)
    assert report["swap_agreement"] == 1.0 and report["accuracy"] == 1.0, report
    results = word_judge.against(["pick one."] * 3, ["good", "ok", "bad"], ["bad", "ok", "good"])
    assert [r.value for r in results] == [1, 0, -1]


def test_a_position_biased_judge_has_its_verdicts_discounted(tmp_path):
    """A judge that always prefers the first answer agrees with itself never: no pair counts."""
    always_first = [Example("pair", "bias", "pick one.", a, b, 1, "A first") for a in RANK for b in RANK]
    judge = Judge.load(_train(tmp_path, always_first, 30), JudgeParams())
    report = pair_accuracy(judge, _word_pairs())
    assert report["swap_agreement"] == 0.0 and report["accuracy"] == 0.0 and report["malformed"] == 0
    result = swiss([4], judge_play(judge, ["pick one."], [["bad", "ok", "good", "ok"]]), rounds=2)
    assert result.scores[0] == [1.0] * 4  # every match a draw


def test_swiss_round_under_a_tiny_judge_recovers_the_known_order(word_judge):
    candidates = [["bad", "ok", "good", "bad"], ["good", "bad", "ok", "ok"], ["ok", "bad", "bad", "good"]]
    result = swiss([4, 4, 4], judge_play(word_judge, ["pick one."] * 3, candidates), seed=0)
    assert [c[o[0]] for c, o in zip(candidates, result.order)] == ["good"] * 3
    items = [{"question": "pick one.", "answer": "", "metadata": {"candidates": c}} for c in candidates]
    assert [it["answer"] for it in choose_references(items, word_judge, SwissParams(candidates=4))] == ["good"] * 3


def test_online_judge_fires_logs_recalibrates_and_resumes(tmp_path, word_judge):
    from tasks.envs.genrm.online import OnlineJudge
    from tasks.train.policy import save_policy

    genrm = tmp_path / "genrm"
    save_policy(word_judge.model, word_judge.tok, genrm / "judge" / "policy")
    items = OPEN_PROMPT.generate(2, seed=0, difficulty=1)
    for it in items:
        it.update(task="open_prompt", answer="bees make honey.")
    (genrm / "general.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    p = GenRMParams.from_mapping({"monitor": {"window": 2, "min_samples": 8, "cooldown": 0},
                                  "train": {"model": TINY_LLAMA, "recalibrate_steps": 2, "recalibrate_examples": 8,
                                            "batch_size": 4}, "data": {"max_pad": 1}})
    online = OnlineJudge(p, genrm, tmp_path / "rl")
    assert [it["id"] for it in online.rows()["open_prompt"]] == [it["id"] for it in items]
    drawn = [("open_prompt", it) for it in online.rows()["open_prompt"]]
    drawn.append(("arithmetic", {"question": "1+1=", "answer": "2"}))  # not judged: scored by its rule
    texts = [["<answer>good</answer>", "<answer>bad</answer>", "no answer"]] * 3
    scores = online.score(drawn, texts, [[5, 9, 3]] * 3, observe=True)
    assert sorted(scores) == [0, 1] and all(len(s) == 3 and s[2] == 0.0 for s in scores.values())
    metrics, event = online.end_step(0)
    assert event is None and metrics["genrm/judge/prompts"] == 8 and metrics["genrm/judge/prompts_per_s"] > 0
    hacked = [Judged(g, 1.0, 10 * k, k / 8) for g in range(2) for k in range(8)]
    longer = [Judged(g, 1.0, 10 * k + 80, min(1.0, k / 8 + 0.2)) for g in range(2) for k in range(8)]
    fired = []
    for step, pending in ((1, hacked), (2, longer)):  # longer replies, higher scores, no more success
        online.pending = pending
        metrics, event = online.end_step(step)
        if event is not None:
            fired.append(event)
            assert metrics["genrm/monitor/fired"] == 1.0 and metrics["genrm/recalibrations"] == 1.0
    assert len(fired) == 1  # then the window starts afresh
    event = fired[0]
    logged = [json.loads(line) for line in (tmp_path / "rl" / "genrm" / "events.jsonl").read_text().splitlines()]
    assert logged == [event] and event["length_corr"] > 0.3 and event["length_growth"] > 1.1
    assert Path(event["judge"]).is_dir() and online.judge_dir == Path(event["judge"])
    again = OnlineJudge(p, genrm, tmp_path / "rl")
    again.load_state_dict(online.state_dict())
    assert again.judge_dir == online.judge_dir and again.recalibrations == 1


def test_genrm_stage_end_to_end_on_tiny_settings(tmp_path):
    from model.tokenizer import train_tokenizer
    from tasks.train.policy import build_policy, save_policy

    tok = train_tokenizer(["<think>1+2+0=3</think><answer>3</answer> 12+34="] * 4, 300, tmp_path / "tok")
    save_policy(build_policy(TINY_LLAMA, tok), tok, tmp_path / "policy")
    sets = ["train.steps=4", "train.warmup_steps=1", f"train.model={json.dumps(TINY_LLAMA)}", "train.vocab_size=300",
            "data.grade_examples=16", "data.pair_examples=16", "data.eval_grade=6", "data.eval_pairs=6",
            "data.eval_length_pairs=6", "eval.items=3", "eval.n=2", "eval.max_new_tokens=8", "swiss.prompts=2",
            "swiss.candidates=4", "general.max_constraints=1"]
    from tasks.config import render_defaults

    (tmp_path / "params.yaml").write_text(render_defaults())
    cmd = [sys.executable, "-m", "tasks.envs.genrm.stage", "--policy", str(tmp_path / "policy"),
           "--output", str(tmp_path / "out"), "--params", str(tmp_path / "params.yaml")]
    for s in sets:
        cmd += ["--set", s]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["grade"]["n"] == 6 and report["pairs"]["n"] == 6 and report["length"]["n"] == 6
    assert 0.0 <= report["length"]["longer_wins"] <= 1.0 and report["best_of_n"]["n"] == 2
    assert report["best_of_n"]["pass_at_n"] >= report["best_of_n"]["best_of_n"]
    assert (tmp_path / "out" / "judge.png").stat().st_size > 10_000
    assert "position-swap agreement" in (tmp_path / "out" / "report.md").read_text()
    pool = [json.loads(line) for line in (tmp_path / "out" / "general.jsonl").read_text().splitlines()]
    assert {it["task"] for it in pool} == {"open_prompt", "instruct"}
    assert all(it["answer"] in it["metadata"]["candidates"] for it in pool)
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "nope")] + cmd[5:], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "no config.json" in bad.stderr
