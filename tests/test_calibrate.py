"""Difficulty calibration and schedule: bounds from stub policies whose pass rates are chosen by
hand, the bounds file the command writes, and the step -> level schedule."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import tasks.curate.calibrate as cal
from tasks.config import ParamsError, load
from tasks.curate.calibrate import calibrate, lower_scan, policy_pass_rates, run_scans, upper_scan
from tasks.envs.synlogic import TASKS
from tasks.envs.synlogic.base import SynLogicTask
from tasks.envs.synlogic.schedule import DifficultySchedule, ScheduleParams, SynLogicParams
from tasks.train.policy import SamplingPolicy


def stub(table: dict[str, dict[int, list[float]]], calls: list | None = None):
    """pass_rate from a table policy -> level -> per-item shares; records the calls made."""
    def pass_rate(task, difficulty, policy):
        if calls is not None:
            calls.append((policy, difficulty))
        return table[policy][difficulty]
    return pass_rate


def test_bounds_follow_the_report_rule_and_stop_early():
    table = {
        # mean base rates 0.9, 0.6, 0.25, 0.1, 0: level 3 is the first in (0, 0.5]
        "base": {1: [1, 0.8], 2: [0.6, 0.6], 3: [0.5, 0.0], 4: [0.2, 0.0], 5: [0.0, 0.0]},
        # strong pass@10: an item counts when any of its 10 samples was right
        "strong": {1: [1, 1], 2: [1, 0.5], 3: [0.3, 0], 4: [0, 0.1], 5: [0, 0]},
    }
    calls = []
    bounds = calibrate(stub(table, calls), {"t": range(1, 6)}, max_base_rate=0.5)["t"]
    assert (bounds.low, bounds.high) == (3, 4)
    assert bounds.base_rate == {1: 0.9, 2: 0.6, 3: 0.25}
    assert bounds.strong_pass == {5: 0.0, 4: 0.5}
    assert calls == [("base", 1), ("base", 2), ("base", 3), ("strong", 5), ("strong", 4)]


@pytest.mark.parametrize("base, strong, want", [
    ([0.9, 0.8, 0.7], [1, 1, 1], (3, 3)),   # base passes everything: start at the top
    ([0.0, 0.0, 0.0], [1, 1, 0], (1, 2)),   # base fails everything: start at the bottom
    ([0.9, 0.0, 0.0], [1, 0, 0], (2, 2)),   # jump from easy to impossible; strong solves only 1
    ([0.3, 0.2, 0.1], [0, 0, 0], (1, 1)),   # strong solves nothing: high falls back to low
])
def test_bound_fallbacks(base, strong, want):
    table = {"base": {i + 1: [r] for i, r in enumerate(base)},
             "strong": {i + 1: [r] for i, r in enumerate(strong)}}
    b = calibrate(stub(table), {"t": [1, 2, 3]}, max_base_rate=0.5)["t"]
    assert (b.low, b.high) == want


class StubPolicy:
    """``sample(questions, k)``: right only for questions in ``knows``; records the batch sizes."""

    def __init__(self, knows: dict[str, str]):
        self.knows, self.calls = knows, []

    def sample(self, questions, k):
        self.calls.append((len(questions), k))
        return [[f"<think>hm</think><answer>{self.knows.get(q, 'no idea')}</answer>"] * k for q in questions]


def test_policy_pass_rates_sample_every_task_in_one_batch_and_score_through_the_verifier():
    items = TASKS["dyck_languages"].generate(3, seed=0, difficulty=2)
    sort = TASKS["word_sorting"].generate(3, seed=0, difficulty=1)
    policy = StubPolicy({items[0]["question"]: items[0]["answer"], sort[2]["question"]: sort[2]["answer"]})
    rates = policy_pass_rates(policy, 3, items=3, seed=0)
    assert rates({"dyck_languages": 2, "word_sorting": 1}) == {"dyck_languages": [1.0, 0.0, 0.0],
                                                              "word_sorting": [0.0, 0.0, 1.0]}
    assert policy.calls == [(6, 3)]


def test_scans_of_several_tasks_run_in_lockstep_rounds():
    base = {"a": {1: [0.9], 2: [0.3], 3: [0.0]}, "b": {1: [0.2], 2: [0.0], 3: [0.0]}}
    calls = []

    def rates(want):
        calls.append(dict(want))
        return {t: base[t][lv] for t, lv in want.items()}

    lows = run_scans({t: lower_scan([1, 2, 3], 0.5) for t in base}, rates)
    assert lows == {"a": (2, {1: 0.9, 2: 0.3}), "b": (1, {1: 0.2})}
    assert calls == [{"a": 1, "b": 1}, {"a": 2}]  # b stopped after round one
    strong = {"a": {3: [0.0, 0.2], 2: [1.0]}, "b": {3: [0.0], 2: [0.0], 1: [0.5]}}
    highs = run_scans({t: upper_scan([1, 2, 3], lows[t][0]) for t in base},
                      lambda want: {t: strong[t][lv] for t, lv in want.items()})
    assert highs == {"a": (3, {3: 0.5}), "b": (1, {3: 0.0, 2: 0.0, 1: 1.0})}


def test_main_writes_calibrated_bounds(tmp_path, monkeypatch):
    class Policy:
        def __init__(self, right):
            self.right = right

        def sample(self, questions, samples):
            lookup = {it["question"]: it["answer"] for lv in range(1, 6)
                      for it in TASKS["dyck_languages"].generate(2, 0, lv)}
            return [[f"<answer>{lookup[q] if self.right else 'x'}</answer>"] * samples
                    for q in questions]

    monkeypatch.setattr(SamplingPolicy, "load", classmethod(lambda cls, d, **kw: Policy(Path(d).name == "strong")))
    for name in ("base", "strong"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    path = tmp_path / "params.yaml"
    path.write_text(f"calibrate:\n  items: 2\n  seed: 0\n  tasks: [dyck_languages]\n  strong_policy: {tmp_path / 'strong'}\n")
    results = cal.main(["--policy", str(tmp_path / "base"), "--params", str(path), "--output", str(tmp_path / "out")])
    # the base model fails every level (low falls back to 1), the strong one solves the top level
    assert (results["dyck_languages"].low, results["dyck_languages"].high) == (1, 5)
    assert json.loads((tmp_path / "out" / "bounds.json").read_text()) == {"dyck_languages": {"low": 1, "high": 5}}
    assert json.loads((tmp_path / "out" / "report.json").read_text())["tasks"]["dyck_languages"]["low"] == 1
    path.write_text("calibrate:\n  tasks: [nope]\n")
    with pytest.raises(SystemExit) as exc:
        cal.main(["--policy", str(tmp_path / "base"), "--params", str(path), "--output", str(tmp_path / "o2")])
    assert exc.value.code == 2


def test_schedule_linear_and_stepped():
    lin = DifficultySchedule({"t": (2, 6)}, ScheduleParams(kind="linear", start_step=100, end_step=500))
    assert [lin.difficulty("t", s) for s in (0, 100, 200, 300, 500, 10_000)] == [2, 2, 3, 4, 6, 6]
    step = DifficultySchedule({"t": (1, 5)}, ScheduleParams(kind="stepped", start_step=0, end_step=300, stages=3))
    assert [step.difficulty("t", s) for s in (0, 99, 100, 199, 200, 300)] == [1, 1, 3, 3, 5, 5]
    one = DifficultySchedule({"t": (2, 4)}, ScheduleParams(kind="stepped", stages=1))
    assert one(10_000) == {"t": 2}
    with pytest.raises(KeyError, match="no synlogic.difficulty entry"):
        lin.difficulty("other", 0)


@pytest.mark.parametrize("kwargs, msg", [
    ({"kind": "cosine"}, "synlogic.schedule.kind = 'cosine'"),
    ({"start_step": 5, "end_step": 5}, "synlogic.schedule.end_step = 5"),
    ({"stages": 0}, "synlogic.schedule.stages = 0"),
])
def test_schedule_rejects_bad_settings(kwargs, msg):
    with pytest.raises(ParamsError, match=re.escape(msg)):
        ScheduleParams(**kwargs)
    with pytest.raises(ValueError, match="low 4 exceeds high 2"):
        DifficultySchedule({"t": (4, 2)})


def test_bounds_default_to_each_family_range_and_are_checked(tmp_path):
    synlogic = {n: t for n, t in TASKS.items() if isinstance(t, SynLogicTask)}
    schedule = DifficultySchedule.from_params(SynLogicParams(), synlogic)
    assert schedule.bounds == {n: tuple(t.difficulty_range) for n, t in synlogic.items()}
    path = tmp_path / "p.yaml"
    path.write_text("synlogic:\n  difficulties: {}\n")
    with pytest.raises(ParamsError, match="synlogic.difficulties: unknown key"):
        load(path, {"synlogic": SynLogicParams})
    path.write_text("synlogic:\n  difficulty:\n    maze: {low: 1}\n")
    with pytest.raises(ParamsError, match="synlogic.difficulty.maze.high: missing"):
        load(path, {"synlogic": SynLogicParams})
    path.write_text("synlogic:\n  difficulty:\n    maze: {low: 0, high: 9}\n")
    params = load(path, {"synlogic": SynLogicParams})["synlogic"]
    with pytest.raises(ParamsError, match="synlogic.difficulty.maze"):
        DifficultySchedule.from_params(params, {"maze": TASKS["maze"]})


def test_main_end_to_end_with_a_tiny_llama(tmp_path):
    """The real path: a saved policy, TorchEngine sampling, verification, params write-back."""
    from model.tokenizer import train_tokenizer
    from tasks.train.policy import build_policy, save_policy

    texts = [it["question"] for it in TASKS["boolean_expressions"].generate(20, 0, 3)]
    tok = train_tokenizer(texts, vocab_size=300, out_dir=tmp_path / "tok")
    model = build_policy({"arch": "llama", "hidden_size": 32, "intermediate_size": 64,
                          "num_hidden_layers": 1, "num_attention_heads": 2,
                          "num_key_value_heads": 2, "max_position_embeddings": 512}, tok)
    save_policy(model, tok, tmp_path / "policy")
    path = tmp_path / "params.yaml"
    path.write_text("calibrate:\n  items: 2\n  base_samples: 1\n  strong_samples: 2\n  max_new_tokens: 4\n"
                    "  batch_size: 3\n  device: cpu\n  tasks: [boolean_expressions]\n")
    results = cal.main(["--policy", str(tmp_path / "policy"), "--params", str(path), "--output", str(tmp_path / "out")])
    # an untrained model answers nothing: base rate 0 at every level, so low = 1; high falls to low
    b = results["boolean_expressions"]
    assert b.base_rate == {lv: 0.0 for lv in range(1, 6)}
    assert b.strong_pass == {lv: 0.0 for lv in range(5, 0, -1)}
    assert json.loads((tmp_path / "out" / "bounds.json").read_text()) == {"boolean_expressions": {"low": 1, "high": 1}}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # no strong_policy named: the base policy itself, with strong_samples tries per item
    assert report["strong_policy"] == report["base_policy"] == str(tmp_path / "policy")
    assert (report["base_samples"], report["strong_samples"]) == (1, 2)
    with open(path, "a") as f:
        f.write(f"  strong_policy: {tmp_path / 'nowhere'}\n")
    with pytest.raises(SystemExit) as exit_:
        cal.main(["--policy", str(tmp_path / "policy"), "--params", str(path), "--output", str(tmp_path / "out2")])
    assert exit_.value.code == 2
