"""Resume and MLflow runs of the RL stage (issue 17), killed and changed for real:

- a param change after a finished RL run is not resumed: the flow reruns the stage into an empty
  partial folder, and run alone the checkpoints refuse other params or another base policy, saying
  which setting or input differs;
- an RL process SIGKILLed before its first checkpoint: the rerun continues the same MLflow run, logs
  no step twice and ends it FINISHED; a rerun with other params starts a new run and marks the dead
  one KILLED.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from flows.dag import Stage
from flows.runner import execute_stage, stage_is_current
from tasks.train.checkpoint import latest_checkpoint
from tasks.train.tracking import read_metrics
from test_resume import SFT, copy_project, kill_when, write_pairs

RL = {"prompts_per_step": 2, "samples_per_prompt": 4, "updates_per_batch": 2, "lr": 1e-3, "max_new_tokens": 16,
      "overlong_buffer": 12, "max_sampling_rounds": 2, "curriculum": [{"steps": 2, "weights": {"arithmetic": 1.0}}],
      "eval_every": 2, "eval_prompts": 4, "eval_samples": 1, "steps": 2, "checkpoint_every": 1,
      "keep_checkpoints": 2, "device": "cpu"}
RL_STAGE = Stage("rl", "tasks.train.rl.train", {"policy": "base/policy", "data": "rl_data"}, "runs/rl")
quiet = lambda _: None  # noqa: E731


def write_rl_data(folder: Path) -> None:
    """The RL data folder (``tasks.curate.rl_data``'s files) for 1-digit additions: training rows and
    held-out items."""
    from tasks.envs.params import EnvParams
    from tasks.envs.registry import get_task

    task = get_task("arithmetic", EnvParams())
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": it["id"], "task": "arithmetic", "source": "test", "question": it["question"], "answer": it["answer"],
             "metadata": json.dumps(it.get("metadata", {}))} for it in task.generate(32, seed=0, difficulty=1)]
    pl.DataFrame(rows).write_parquet(folder / "mix.parquet")
    held = task.generate(4, seed=1_000_000, difficulty=1)
    (folder / "heldout.jsonl").write_text("".join(json.dumps({**it, "family": "arithmetic", "task": "arithmetic"}) + "\n"
                                                  for it in held))


@pytest.fixture(scope="module")
def rl_project(tmp_path_factory):
    """A project copy with a briefly SFT'd tiny Llama as ``base/policy`` and a small ``rl`` section."""
    from tasks.train.sft import SFTParams, train_sft

    root = copy_project(tmp_path_factory.mktemp("rl"), {"rl": RL})
    write_pairs(root / "pairs.jsonl")
    write_rl_data(root / "rl_data")
    train_sft(SFTParams(**{**SFT, "data": str(root / "pairs.jsonl"), "steps": 6}), root / "base")
    return root


def _rl_cli(root: Path, out: str, *sets: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks.train.rl.train", "--policy", "base/policy", "--data", "rl_data",
                           "--output", out, *[x for s in sets for x in ("--set", s)]],
                          cwd=root, capture_output=True, text=True, check=True)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(latest_checkpoint(out / "checkpoints") / "model.pt")


def test_param_change_after_a_finished_rl_run_is_not_resumed(rl_project):
    """The flow reruns the stage on a changed param (an empty partial folder, not the old checkpoints)."""
    root = rl_project
    execute_stage(RL_STAGE, root=root, echo=quiet)
    first = _weights(root / "runs/rl")
    assert execute_stage(RL_STAGE, root=root, echo=quiet)["skipped"]
    (root / "params.yaml").write_text(yaml.safe_dump({"rl": {**RL, "lr": 5e-2}}))
    assert not stage_is_current(RL_STAGE, root)
    lines: list[str] = []
    execute_stage(RL_STAGE, root=root, echo=lines.append)
    assert not any("continuing" in line for line in lines)
    assert [r["step"] for r in read_metrics(root / "runs/rl")] == [0, 1, 2]
    assert any(not torch.equal(first[k], v) for k, v in _weights(root / "runs/rl").items())
    (root / "params.yaml").write_text(yaml.safe_dump({"rl": RL}))


def test_rl_checkpoints_refuse_other_params_and_another_base_policy(rl_project):
    """Run alone (no flow), the checkpoints themselves say what made them."""
    root = rl_project
    _rl_cli(root, "alone")
    first = _weights(root / "alone")
    again = _rl_cli(root, "alone")  # same params, same policy: resumes at the end, nothing to do
    assert "starting afresh" not in again.stdout and torch.equal(next(iter(_weights(root / "alone").values())),
                                                                next(iter(first.values())))
    changed = _rl_cli(root, "alone", "lr=0.05")
    assert "not resuming from step_000002" in changed.stdout and "rl.lr: 0.001 -> 0.05" in changed.stdout
    assert [r["step"] for r in read_metrics(root / "alone")] == [0, 1, 2]
    assert any(not torch.equal(first[k], v) for k, v in _weights(root / "alone").items())

    other = root / "base_other"
    shutil.copytree(root / "base/policy", other)
    st = other / "model.safetensors"
    data = bytearray(st.read_bytes())
    data[-1] ^= 1  # one bit of one weight: another base policy
    st.write_bytes(bytes(data))
    out = subprocess.run([sys.executable, "-m", "tasks.train.rl.train", "--policy", str(other), "--data", "rl_data",
                          "--output", "alone", "--set", "lr=0.05"], cwd=root, capture_output=True, text=True, check=True)
    assert "inputs.policy changed" in out.stdout


def _history_steps(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    keys = client.get_run(run_id).data.metrics
    return {k: [m.step for m in client.get_metric_history(run_id, k)] for k in keys}


def _rl(root: Path, out: str, *sets: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tasks.train.rl.train", "--policy", "base/policy", "--data", "rl_data",
                             "--output", out, "--set", "steps=3", "--set", "checkpoint_every=3",
                             *[x for s in sets for x in ("--set", s)]],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _killed_before_first_checkpoint(root: Path, out: str, *sets: str) -> str:
    """Start RL, SIGKILL it once it logged step 1 (its first checkpoint is at step 3); its run id."""
    proc = _rl(root, out, *sets)
    metrics = root / out / "metrics.jsonl"
    kill_when(proc, lambda: metrics.exists() and any(json.loads(x)["step"] >= 1 for x in metrics.read_text().splitlines() if x))
    assert not (root / out / "checkpoints").exists() or not any((root / out / "checkpoints").iterdir())
    return json.loads((root / out / "mlflow_run.json").read_text())["run_id"]


def test_rl_killed_before_its_first_checkpoint_continues_its_mlflow_run(rl_project):
    client = MlflowClient()
    since = int(time.time() * 1000)
    run_id = _killed_before_first_checkpoint(rl_project, "early")
    assert client.get_run(run_id).info.status == "RUNNING"
    logged = _history_steps(client, run_id)["reward/mean"]
    assert logged and max(logged) >= 1

    proc = _rl(rl_project, "early")
    assert proc.wait() == 0, proc.stderr.read()
    assert json.loads((rl_project / "early/mlflow_run.json").read_text())["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key, steps in _history_steps(client, run_id).items():
        assert len(steps) == len(set(steps)), f"{key} logged a step twice: {steps}"
    assert sorted(_history_steps(client, run_id)["reward/mean"]) == [1, 2, 3]
    opened = client.search_runs([run.info.experiment_id], filter_string=f"attributes.start_time >= {since}")
    assert [r.info.run_id for r in opened] == [run_id], "the resume opened a second run"


def test_a_dead_run_not_continued_is_marked_killed(rl_project):
    client = MlflowClient()
    dead = _killed_before_first_checkpoint(rl_project, "changed")
    proc = _rl(rl_project, "changed", "lr=0.05")
    assert proc.wait() == 0, proc.stderr.read()
    fresh = json.loads((rl_project / "changed/mlflow_run.json").read_text())["run_id"]
    assert fresh != dead
    assert client.get_run(dead).info.status == "KILLED"
    assert client.get_run(fresh).info.status == "FINISHED"
