"""The RL driver end to end on a tiny HF Llama: metrics, MLflow, checkpoints, a real kill and
resume that reproduces an uninterrupted run, and DeepSpeed ZeRO over two gloo processes on CPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tasks.rl.checkpoint import latest_checkpoint, load_state
from tasks.rl.config import load_config
from tasks.rl.tracking import RunTracker, read_metrics
from tasks.rl.train import freeze_body, pack, probability_health, resolve_tasks, train_rl
from tasks.sft import SFTConfig, train_sft

ROOT = Path(__file__).resolve().parents[1]
LLAMA = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128}
RL = {
    "prompts_per_step": 2, "samples_per_prompt": 4, "updates_per_batch": 4, "lr": 1e-3,
    "max_new_tokens": 16, "overlong_buffer": 12, "max_sampling_rounds": 2,
    "tasks": {"arithmetic": {"difficulty": 1}}, "eval_every": 2, "eval_prompts": 4, "eval_samples": 1,
    "checkpoint_every": 1, "keep_checkpoints": 2,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A briefly SFT'd tiny Llama policy and a params file with a small ``rl:`` section."""
    root = tmp_path_factory.mktemp("rl")
    train_sft(SFTConfig(model=LLAMA, difficulty=1, examples=100, steps=20, batch_size=16, lr=3e-3,
                        warmup_steps=2, vocab_size=300, out_dir=str(root / "sft")))
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"rl": {**RL, "policy": str(root / "sft" / "policy")}}))
    return root, params


def _cli(params: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tasks.rl.train", "--config", str(params), "--out-dir", str(out),
            "--steps", str(steps), *extra]


def _comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def test_probability_health_and_pack():
    mask = torch.tensor([[0.0, 1, 1, 1]])
    p_inf = torch.tensor([[0.0, 0.2, 0.5, 0.9]])
    p_train = torch.tensor([[0.0, 0.3, 0.5, 0.7]])
    h = probability_health(p_inf.clamp(min=1e-9).log(), p_train.clamp(min=1e-9).log(), mask)
    # x = (0.2, 0.5, 0.9), y = (0.3, 0.5, 0.7): centred (-1/3, -1/30, 11/30) and (-0.2, 0, 0.2)
    sxy, sxx, syy = (1 / 15 + 11 / 150), (1 / 9 + 1 / 900 + 121 / 900), 0.08
    assert h["health/prob_pearson"] == pytest.approx(sxy / (sxx * syy) ** 0.5, rel=1e-6)
    assert h["health/prob_abs_delta"] == pytest.approx((0.1 + 0.0 + 0.2) / 3, rel=1e-6)
    groups = [{"prompt": [5, 6], "responses": [[7], [8, 9]], "logprobs": [[-0.5], [-1.0, -2.0]]}]
    d = pack(groups, pad_id=0)
    assert d["ids"].tolist() == [[5, 6, 7, 0], [5, 6, 8, 9]]
    assert d["mask"].tolist() == [[0, 0, 1, 0], [0, 0, 1, 1]]
    assert d["infer_logprobs"].tolist() == [[0, 0, -0.5, 0], [0, 0, -1.0, -2.0]]


def test_resolve_tasks_uses_the_task_registry():
    # arithmetic and a SynLogic family come from different modules; get_task loads them all
    assert sorted(resolve_tasks(["arithmetic", "sudoku"])) == ["arithmetic", "sudoku"]
    with pytest.raises(ValueError, match="rl.tasks: unknown task 'nope'"):
        resolve_tasks(["nope"])


def test_freeze_body_keeps_only_head_and_final_norm():
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=50, **{k: v for k, v in LLAMA.items() if k != "arch"})
    model = transformers.LlamaForCausalLM(cfg)
    # lm_head [50, 32] + final RMSNorm [32]
    assert freeze_body(model) == 50 * 32 + 32
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["lm_head.weight", "model.norm.weight"]


def test_tracker_without_mlflow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError (the GPU image)
    t = RunTracker(tmp_path, experiment="x", run_name="y", params={})
    t.log(1, {"a": 1.0, "b": float("nan")})
    t.close()
    assert read_metrics(tmp_path) == [{"step": 1, "a": 1.0}] and t.run_id is None


def test_train_logs_metrics_to_mlflow_and_exports(setup, tmp_path):
    root, params = setup
    cfg = load_config(params, algorithm="cispo", out_dir=str(tmp_path / "run"), steps=2)
    train_rl(cfg)
    rows = read_metrics(tmp_path / "run")
    trained = [r for r in rows[1:] if not r["train/skipped"]]
    assert trained, "no step had an informative group"
    final = {**rows[0], **trained[-1]}
    for key in ("reward/arithmetic", "accuracy/arithmetic", "length/mean", "length/p50", "length/p99",
                "finish/eos", "finish/length", "train/entropy", "train/is_weight_mean", "train/clip_fraction",
                "train/masked_fraction", "train/grad_norm", "perf/gen_tokens_per_s", "health/prob_pearson",
                "health/prob_abs_delta", "eval/accuracy/arithmetic"):
        assert key in final, key
    # the engine and the training path compute the same fp32 probabilities of the same tokens
    assert final["health/prob_abs_delta"] < 1e-4 and final["health/prob_pearson"] > 0.999
    assert (tmp_path / "run" / "policy" / "config.json").exists()
    import mlflow

    state = load_state(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    history = mlflow.tracking.MlflowClient().get_metric_history(state["run_id"], "reward/arithmetic")
    assert [m.step for m in history] == [1, 2]


def test_kill_and_resume_reproduces_uninterrupted_run(setup, tmp_path):
    root, params = setup
    steps = 6
    train_rl(load_config(params, algorithm="grpo", out_dir=str(tmp_path / "whole"), steps=steps))
    whole = read_metrics(tmp_path / "whole")

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(params, killed, steps, "--algorithm", "grpo"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step_000002" / "state.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    reached = load_state(latest_checkpoint(killed / "checkpoints"))["step"]
    assert 2 <= reached < steps

    subprocess.run(_cli(params, killed, steps, "--algorithm", "grpo"), cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _comparable(read_metrics(killed)) == _comparable(whole)
    assert [r["step"] for r in whole] == list(range(steps + 1))
    a = torch.load(latest_checkpoint(tmp_path / "whole" / "checkpoints") / "model.pt")
    b = torch.load(latest_checkpoint(killed / "checkpoints") / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_deepspeed_zero2_two_gloo_processes(setup, tmp_path):
    root, params = setup
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
        log = open(tmp_path / f"rank{rank}.log", "w")
        procs.append(subprocess.Popen(_cli(params, tmp_path / "ds", 2, "--train-engine", "deepspeed"), cwd=ROOT,
                                      env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = "".join((tmp_path / f"rank{r}.log").read_text()[-3000:] for r in range(2))
    assert codes == [0, 0], logs
    assert "shm_comm_op built" not in logs  # gloo only: no C++ extension compiled
    rows = read_metrics(tmp_path / "ds")
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["train/grad_norm"] >= 0 for r in rows[1:] if not r["train/skipped"])
    ckpt = latest_checkpoint(tmp_path / "ds" / "checkpoints")
    assert ckpt.name == "step_000002" and (ckpt / "ds").is_dir()
