"""Difficulty calibration and schedule: bounds from stub policies whose pass rates are chosen by
hand, the params write-back that touches only its block, and the step -> level schedule."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import tasks.calibrate as cal
from tasks.calibrate import ModelPolicy, calibrate, policy_pass_rate, write_bounds
from tasks.synlogic import TASKS
from tasks.synlogic.base import SynLogicTask
from tasks.synlogic.schedule import DifficultySchedule, load_params

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


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
    bounds = calibrate(stub(table, calls), {"t": range(1, 6)})["t"]
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
    b = calibrate(stub(table), {"t": [1, 2, 3]})["t"]
    assert (b.low, b.high) == want


PARAMS = """\
# top comment
sft:
  steps: 3   # keep me

# SynLogic comment
synlogic:
  calibrate:
    items: 2
  # difficulty comment
  difficulty:
    sudoku: {low: 1, high: 6}
    maze: {low: 2, high: 4}
  schedule:
    kind: stepped     # inline comment

# next section comment
rl:
  steps: 5
"""


def test_write_bounds_edits_only_the_difficulty_block(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    write_bounds(path, {"sudoku": (3, 5), "nonogram": (2, 3)})
    new = path.read_text()
    assert new == PARAMS.replace(
        "    sudoku: {low: 1, high: 6}\n    maze: {low: 2, high: 4}\n",
        "    maze: {low: 2, high: 4}\n    nonogram: {low: 2, high: 3}\n    sudoku: {low: 3, high: 5}\n")
    assert yaml.safe_load(new)["synlogic"]["schedule"] == {"kind": "stepped"}


def test_write_bounds_appends_a_missing_section_or_block(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("rl:\n  steps: 5\n")
    write_bounds(path, {"maze": (2, 3)}, full_ranges={"maze": (1, 5), "sudoku": (1, 6)})
    parsed = yaml.safe_load(path.read_text())
    assert parsed["rl"] == {"steps": 5}
    assert parsed["synlogic"]["difficulty"] == {"maze": {"low": 2, "high": 3},
                                                "sudoku": {"low": 1, "high": 6}}
    path.write_text("synlogic:\n  schedule:\n    kind: linear\n\nrl:\n  steps: 5\n")
    write_bounds(path, {"maze": (4, 4)})
    assert path.read_text() == ("synlogic:\n  schedule:\n    kind: linear\n  difficulty:\n"
                                "    maze: {low: 4, high: 4}\n\nrl:\n  steps: 5\n")


class StubEngine:
    """Follows TorchEngine.generate's contract; answers right only for prompts in ``knows``."""

    def __init__(self, knows: dict[str, str]):
        self.knows, self.batches = knows, []

    def generate(self, prompts, params, generator=None):
        self.batches.append(len(prompts))
        replies = [f"<think>hm</think><answer>{self.knows.get(bytes(p).decode(), 'no idea')}</answer>"
                   for p in prompts]
        return SimpleNamespace(tokens=[list(r.encode()) for r in replies], logprobs=[],
                               finish_reasons=["eos"] * len(prompts))


def test_policy_pass_rate_samples_and_scores_through_the_engine():
    items = TASKS["dyck_languages"].generate(3, seed=0, difficulty=2)
    engine = StubEngine({items[0]["question"]: items[0]["answer"]})
    policy = ModelPolicy(engine, lambda q: list(q.encode()), lambda ids: bytes(ids).decode(),
                         sampling=None, batch_size=4)
    rate = policy_pass_rate({"p": policy}, {"p": 3}, items=3, seed=0)
    assert rate("dyck_languages", 2, "p") == [1.0, 0.0, 0.0]
    assert engine.batches == [4, 4, 1]  # 3 items x 3 samples in batches of 4


def test_main_writes_calibrated_bounds(tmp_path, monkeypatch):
    class Policy:
        def __init__(self, right):
            self.right = right

        def sample(self, questions, samples):
            lookup = {it["question"]: it["answer"] for lv in range(1, 6)
                      for it in TASKS["dyck_languages"].generate(2, 0, lv)}
            return [[f"<answer>{lookup[q] if self.right else 'x'}</answer>"] * samples
                    for q in questions]

    monkeypatch.setattr(cal.ModelPolicy, "load",
                        classmethod(lambda cls, d, settings, device="cpu": Policy(d == "strong")))
    path = tmp_path / "params.yaml"
    path.write_text("synlogic:\n  calibrate:\n    items: 2\n    seed: 0\n")
    results = cal.main(["--base", "base", "--strong", "strong", "--tasks", "dyck_languages",
                        "--params", str(path), "--report", str(tmp_path / "rates.json")])
    # the base model fails every level (low falls back to 1), the strong one solves the top level
    assert (results["dyck_languages"].low, results["dyck_languages"].high) == (1, 5)
    difficulty = load_params(path)["difficulty"]
    assert difficulty["dyck_languages"] == {"low": 1, "high": 5}
    assert difficulty["sudoku"] == {"low": 1, "high": 6}  # uncalibrated: the full range
    assert (tmp_path / "rates.json").exists()
    with pytest.raises(SystemExit, match="unknown"):
        cal.main(["--base", "b", "--strong", "s", "--tasks", "nope", "--params", str(path)])


def test_schedule_linear_and_stepped():
    lin = DifficultySchedule({"t": (2, 6)}, kind="linear", start_step=100, end_step=500)
    assert [lin.difficulty("t", s) for s in (0, 100, 200, 300, 500, 10_000)] == [2, 2, 3, 4, 6, 6]
    step = DifficultySchedule({"t": (1, 5)}, kind="stepped", start_step=0, end_step=300, stages=3)
    assert [step.difficulty("t", s) for s in (0, 99, 100, 199, 200, 300)] == [1, 1, 3, 3, 5, 5]
    one = DifficultySchedule({"t": (2, 4)}, kind="stepped", stages=1)
    assert one(10_000) == {"t": 2}
    with pytest.raises(KeyError, match="no synlogic.difficulty entry"):
        lin.difficulty("other", 0)


@pytest.mark.parametrize("kwargs, msg", [
    ({"kind": "cosine"}, "kind"), ({"start_step": 5, "end_step": 5}, "end_step"),
    ({"bounds": {"t": (4, 2)}}, "low 4 exceeds high 2"), ({"stages": 0}, "stages"),
])
def test_schedule_rejects_bad_settings(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        DifficultySchedule(**kwargs)


def test_repo_params_cover_every_family_inside_its_range(tmp_path):
    schedule = DifficultySchedule.from_params(load_params(REPO_PARAMS))
    synlogic = {n for n, t in TASKS.items() if isinstance(t, SynLogicTask)}
    assert synlogic <= set(schedule.bounds)
    for name in synlogic:
        lo, hi = TASKS[name].difficulty_range
        assert lo <= schedule.bounds[name][0] <= schedule.bounds[name][1] <= hi
    bad = tmp_path / "p.yaml"
    bad.write_text("synlogic:\n  difficulties: {}\n")
    with pytest.raises(ValueError, match="synlogic.difficulties"):
        load_params(bad)
    bad.write_text("synlogic:\n  difficulty:\n    maze: {low: 1}\n")
    with pytest.raises(ValueError, match="synlogic.difficulty.maze"):
        DifficultySchedule.from_params(load_params(bad))


def test_main_end_to_end_with_a_tiny_llama(tmp_path):
    """The real path: a saved policy, TorchEngine sampling, verification, params write-back."""
    from model.tokenizer import train_tokenizer
    from tasks.rl.policy import build_policy, save_policy

    texts = [it["question"] for it in TASKS["boolean_expressions"].generate(20, 0, 3)]
    tok = train_tokenizer(texts, vocab_size=300, out_dir=tmp_path / "tok")
    model = build_policy({"arch": "llama", "hidden_size": 32, "intermediate_size": 64,
                          "num_hidden_layers": 1, "num_attention_heads": 2,
                          "num_key_value_heads": 2, "max_position_embeddings": 512}, tok)
    save_policy(model, tok, tmp_path / "policy")
    path = tmp_path / "params.yaml"
    path.write_text("synlogic:\n  calibrate:\n    items: 2\n    base_samples: 1\n"
                    "    strong_samples: 2\n    max_new_tokens: 4\n    batch_size: 3\n")
    results = cal.main(["--base", str(tmp_path / "policy"), "--strong", str(tmp_path / "policy"),
                        "--tasks", "boolean_expressions", "--params", str(path)])
    # an untrained model answers nothing: base rate 0 at every level, so low = 1; high falls to low
    b = results["boolean_expressions"]
    assert b.base_rate == {lv: 0.0 for lv in range(1, 6)}
    assert b.strong_pass == {lv: 0.0 for lv in range(5, 0, -1)}
    assert load_params(path)["difficulty"]["boolean_expressions"] == {"low": 1, "high": 1}
