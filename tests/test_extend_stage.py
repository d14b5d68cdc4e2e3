"""The extend stage end to end on a tiny Llama continued from a real RL run: windows that bound the
replies and promote, every promotion in MLflow, the refilter before the last window, Figure 4 and the
closing comparison; early truncation ending the replies of a policy made to repeat; a real SIGKILL
mid-window and a rerun that resumes at the same window and step and ends as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tasks.config import load
from tasks.curate.rl_data import write_generated
from tasks.envs.params import EnvParams
from tasks.train.checkpoint import latest_checkpoint, load_state
from tasks.train.extend.params import ExtendParams, ExtensionTask
from tasks.train.extend.schedule import window_params
from tasks.train.extend.train import PARAMS, extend
from tasks.train.rl.config import RLParams
from tasks.train.rl.train import train_rl
from tasks.train.sft import SFTParams, SFTTask, train_sft
from tasks.train.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[1]
LLAMA = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128}
RL = {"prompts_per_step": 2, "samples_per_prompt": 4, "updates_per_batch": 2, "lr": 1e-4, "lr_head": 1e-3,
      "warmup_updates": 2, "max_new_tokens": 24, "overlong_buffer": 4, "max_sampling_rounds": 1,
      "curriculum": [{"steps": 1, "weights": {"arithmetic": 1.0}}], "format_weight": 0.0,
      "eval_prompts": 4, "eval_samples": 1, "checkpoint_every": 1, "keep_checkpoints": 2}
# windows 10, 12, 14 tokens: arithmetic's one-digit worked reply is longer, so every window binds;
# a tolerance of 1 makes the perplexity test pass at once, so each window promotes after 2 steps
EXTEND = {"ratios": [40, 48, 56], "base_tokens": 0.25, "steps": 6, "prompts_per_step": 2,
          "tasks": {"arithmetic": {"weight": 1.0, "levels": [1], "items": 40}}, "heldout_items": 6,
          "ppl_window": 1, "ppl_tolerance": 1.0, "p99_near": 0.9, "repetition_n": 64, "refilter_easy": 0.75,
          "grad_clip": 0.1, "eval_every": 0, "checkpoint_every": 1}
EVAL = {"k": 1, "max_new_tokens": 24, "batch_size": 64, "device": "cpu"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A briefly SFT'd tiny Llama, 2 RL steps from it (checkpointed), and a params file."""
    root = tmp_path_factory.mktemp("extend")
    write_generated(root / "data", {"arithmetic": 1}, items=64)
    train_sft(SFTParams(model=LLAMA, tasks={"arithmetic": SFTTask(levels=(1,), examples=100)}, steps=20,
                        batch_size=16, lr=3e-3, warmup_steps=2, vocab_size=300, device="cpu"), root / "sft")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"rl": RL, "extend": EXTEND, "eval": EVAL}))
    loaded = load(params, PARAMS, ["rl.steps=2"])
    train_rl(loaded["rl"], root / "sft" / "policy", root / "data", root / "rl", EnvParams())
    return root, params


def _cli(root: Path, params: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "tasks.train.extend.train", "--rl", str(root / "rl"), "--data", str(root / "data"),
            "--output", str(out), "--params", str(params), "--set", "rl.steps=2"]


def _run(root: Path, params: Path, out: Path) -> dict:
    loaded = load(params, PARAMS, ["rl.steps=2"])
    return extend(root / "rl", root / "data", out, loaded["extend"], loaded["rl"], loaded["envs"], loaded["eval"])


def _comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


@pytest.fixture(scope="module")
def whole(setup, tmp_path_factory):
    root, params = setup
    out = tmp_path_factory.mktemp("whole") / "extend"
    return out, _run(root, params, out)


def test_windows_bound_replies_and_promote(whole):
    out, report = whole
    assert [(w["tokens"], w["start"], w["end"], w["promoted"]) for w in report["windows"]] == \
        [(10, 2, 4, True), (12, 4, 6, True), (14, 6, 8, False)]
    assert report["windows"][0]["reason"].startswith("step 4: 10 -> 12 tokens; promote: mean perplexity of the last 1 steps")
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(2, 9))  # the start evaluation, then every step once
    for w in report["windows"]:
        mine = [r for r in rows if w["start"] < r["step"] <= w["end"]]
        assert all(r["extend/window_tokens"] == w["tokens"] for r in mine)
        # no reply is longer than the window, and the replies run into it
        assert all(r["length/p99"] <= w["tokens"] and r["length/arithmetic"] <= w["tokens"] for r in mine)
        assert max(r["finish/length"] for r in mine) > 0.5
    first, last = report["windows"][0], report["windows"][-1]
    assert max(r["length/p99"] for r in rows if r["step"] <= first["end"] and "length/p99" in r) == 10
    assert max(r["length/mean"] for r in rows if r["step"] > last["start"]) > 10  # longer than window 0 allowed
    promoted = [r["step"] for r in rows if r.get("extend/promoted") == 1.0]
    assert promoted == [4, 6]


def test_mitigations_refilter_figure_and_comparison(whole):
    out, report = whole
    rows = read_metrics(out)
    start = rows[0]
    assert start["step"] == 2 and "eval/accuracy/arithmetic" in start and start["extend/window_tokens"] == 10
    step = rows[1]
    assert step["extend/grad_clip"] == 0.1 and step["extend/combined_normalization"] == 1.0
    assert step["extend/eps_high"] == pytest.approx(0.28) and rows[-1]["extend/eps_high"] == pytest.approx(0.2)
    assert step["extend/refiltered"] == 0.0 and rows[-1]["extend/refiltered"] == 1.0
    assert step["extend/repetition_n"] == 64
    ref = report["refilter"]
    assert ref["graded"] == report["rows"] and ref["kept"] == ref["graded"] - ref["too_easy"] - ref["synthetic_dropped"]
    assert (out / "checkpoints" / "data_last" / "mix.parquet").is_file()
    assert (out / "figure4.png").stat().st_size > 10_000 and (out / "policy" / "config.json").is_file()
    cmp = report["long_replies"]["groups"]
    assert set(cmp) == {"arithmetic level 1", "worked reply > 10 tokens", "all"}
    held = (out / "checkpoints" / "data" / "heldout.jsonl").read_text().splitlines()
    assert cmp["all"]["items"] == len(held) > 0 and set(cmp["all"]) >= {"rl", "extend", "extend-rl", "reply_tokens"}
    assert "| worked reply > 10 tokens |" in (out / "long_replies.md").read_text()


def test_every_promotion_and_its_reason_goes_to_mlflow(whole):
    import mlflow

    out, report = whole
    run_id = json.loads((out / "checkpoints" / "run" / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.tracking.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.tags["extend.window0"] == f"10 tokens, steps 2-4: {report['windows'][0]['reason']}"
    assert "budget of 6 steps ended" in run.data.tags["extend.window2"]
    history = client.get_metric_history(run_id, "extend/promoted")
    assert sorted(m.step for m in history if m.value == 1.0) == [4, 6]
    assert sorted(m.step for m in client.get_metric_history(run_id, "extend/window_tokens")) == list(range(2, 9))
    assert {a.path for a in client.list_artifacts(run_id)} >= {"figure4.png", "report.json", "long_replies.md"}
    assert run.info.status == "FINISHED"


def test_killed_mid_window_resumes_at_the_same_window_and_step(setup, whole, tmp_path):
    root, params = setup
    out, report = whole
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(root, params, killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    window1 = killed / "checkpoints" / "window1" / "checkpoints"
    deadline = time.time() + 300
    while latest_checkpoint(window1) is None:  # window 1 spans steps 4-6: its first checkpoint is step 5
        assert proc.poll() is None and time.time() < deadline, "the run ended before the middle of window 1"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    state = json.loads((killed / "checkpoints" / "windows.json").read_text())
    assert [w["index"] for w in state["windows"]] == [0, 1] and "end" not in state["windows"][1]
    assert load_state(latest_checkpoint(window1))["step"] == 5

    done = subprocess.run(_cli(root, params, killed), cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "window 1 (12 tokens), steps 4-6: step 6: 12 -> 14 tokens; promote" in done.stdout
    again = json.loads((killed / "report.json").read_text())
    assert again["windows"] == report["windows"] and again["refilter"] == report["refilter"]
    assert _comparable(read_metrics(killed)) == _comparable(read_metrics(out))


def test_early_truncation_ends_the_replies_of_a_policy_made_to_repeat(setup, tmp_path):
    root, _ = setup
    # SFT on a reply of 120 sevens: the model cannot count that far, so every next seven gets p = 0.986
    pairs = tmp_path / "sevens.jsonl"
    pairs.write_text("".join(json.dumps({"question": f"{a}+{a}=", "response": "<think>" + "7" * 120 + "</think><answer>7</answer>"})
                             + "\n" for a in range(1, 10)))
    train_sft(SFTParams(model={**LLAMA, "max_position_embeddings": 256}, data=str(pairs), tasks={}, steps=60,
                        batch_size=9, lr=2e-2, warmup_steps=2, vocab_size=300, device="cpu"), tmp_path / "sevens")
    rl = RLParams(**{**RL, "steps": 1, "prompts_per_step": 4})
    ext = ExtendParams(ratios=(40,), base_tokens=0.75, repetition_n=8, repetition_p=0.95, prompts_per_step=4,
                       tasks={"arithmetic": ExtensionTask(weight=1.0)}, eval_every=0)
    steps = {}
    for truncate in (True, False):
        cfg = window_params(rl, ExtendParams(**{**ext.to_dict(), "early_truncation": truncate}), 0, [30], end=1)
        assert cfg.max_new_tokens == 30 and cfg.repetition_n == (8 if truncate else rl.repetition_n)
        train_rl(cfg, tmp_path / "sevens" / "policy", root / "data", tmp_path / str(truncate), EnvParams())
        steps[truncate] = read_metrics(tmp_path / str(truncate))[-1]
    # on: a run of 8 confident sevens ends the reply (a rarer 1.4% token restarts the count); off: they run to the window
    assert steps[True]["finish/repetition"] >= 0.75 and steps[True]["length/p99"] < 30
    assert steps[False]["finish/repetition"] == 0.0 and steps[False]["length/p99"] == 30
    assert steps[True]["length/mean"] < steps[False]["length/mean"]


def test_stage_refuses_an_rl_folder_without_checkpoints(setup, tmp_path):
    root, params = setup
    (tmp_path / "rl").mkdir()
    cmd = _cli(root, params, tmp_path / "out")
    cmd[cmd.index("--rl") + 1] = str(tmp_path / "rl")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "needs the RL stage's checkpoints/step_* and policy/" in done.stderr
