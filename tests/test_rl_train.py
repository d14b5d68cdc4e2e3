"""The RL driver end to end on a tiny HF Llama: metrics, MLflow, checkpoints, a real kill and
resume that reproduces an uninterrupted run, and DeepSpeed ZeRO over two gloo processes on CPU; the
update step on our M1 model and a Llama: parameter groups with their own rates, warmup, and a first
update whose importance ratios are exactly 1."""

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

from tasks.config import load
from tasks.envs.params import EnvParams
from tasks.envs.registry import get_tasks
from tasks.train.checkpoint import latest_checkpoint, load_state
from tasks.train.rl.advantages import group_advantages
from tasks.train.rl.config import RLParams
from tasks.train.rl.engines import make_trainer, param_groups
from tasks.curate.rl_data import write_generated
from tasks.train.rl.sampling import group_minibatches
from tasks.train.rl.train import PARAMS, old_policy_logprobs, pack, probability_health, train_rl, update_policy
from tasks.train.sft import SFTParams, SFTTask, train_sft
from tasks.train.tracking import RunTracker, read_metrics

ROOT = Path(__file__).resolve().parents[1]
LLAMA = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128}
RL = {
    "prompts_per_step": 2, "samples_per_prompt": 4, "updates_per_batch": 2, "lr": 1e-4, "lr_head": 1e-3,
    "warmup_updates": 2,
    "max_new_tokens": 16, "overlong_buffer": 12, "max_sampling_rounds": 2,
    "curriculum": [{"steps": 1, "weights": {"arithmetic": 1.0}}], "format_weight": 0.0,
    "eval_every": 2, "eval_prompts": 4, "eval_samples": 1,
    "checkpoint_every": 1, "keep_checkpoints": 2,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A briefly SFT'd tiny Llama policy and a params file with a small ``rl:`` section."""
    root = tmp_path_factory.mktemp("rl")
    write_generated(root / "data", {"arithmetic": 1}, items=64)
    train_sft(SFTParams(model=LLAMA, tasks={"arithmetic": SFTTask(levels=(1,), examples=100)}, steps=20, batch_size=16, lr=3e-3,
                        warmup_steps=2, vocab_size=300, device="cpu"), root / "sft")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"rl": RL}))
    return root, params


def _cli(root: Path, params: Path, out: Path, steps: int, *sets: str) -> list[str]:
    return [sys.executable, "-m", "tasks.train.rl.train", "--params", str(params), "--policy", str(root / "sft" / "policy"),
            "--data", str(root / "data"),
            "--output", str(out), "--set", f"steps={steps}", *[x for s in sets for x in ("--set", s)]]


def _run(root: Path, params: Path, out: Path, *sets: str) -> None:
    loaded = load(params, PARAMS, sets)
    train_rl(loaded["rl"], root / "sft" / "policy", root / "data", out, loaded["envs"])


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
    d = pack(groups)
    assert d["prompts"] == [[5, 6], [5, 6]] and d["responses"] == [[7], [8, 9]]
    assert d["mask"].tolist() == [[1, 0], [1, 1]]
    assert d["infer_logprobs"].tolist() == [[-0.5, 0], [-1.0, -2.0]]


def test_get_tasks_uses_the_task_registry():
    # arithmetic and a SynLogic family come from different modules; the registry loads them all
    assert sorted(get_tasks(["arithmetic", "sudoku"], EnvParams())) == ["arithmetic", "sudoku"]
    with pytest.raises(ValueError, match="rl.tasks: unknown task 'nope'"):
        get_tasks(["nope"], where="rl.tasks")


def _llama(vocab: int = 50):
    import transformers

    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(vocab_size=vocab, **{k: v for k, v in LLAMA.items() if k != "arch"}))


def _m1(vocab: int = 50):
    from model import M1Config, M1ForCausalLM

    torch.manual_seed(0)
    return M1ForCausalLM(M1Config.preset("tiny", vocab_size=vocab))


def _batch(vocab: int, groups: int = 4, size: int = 4) -> tuple[dict, torch.Tensor]:
    """Random prompts and replies of uneven lengths, every group with a correct and a wrong reply."""
    g = torch.Generator().manual_seed(0)
    rand = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()  # noqa: E731
    batch = [{"prompt": rand(5 + j), "responses": [rand(3 + (j + i) % 5) for i in range(size)],
              "logprobs": [[0.0] * (3 + (j + i) % 5) for i in range(size)]} for j in range(groups)]
    rewards = torch.tensor([[1.0] + [float(i == j % size) for i in range(1, size)] for j in range(groups)])
    return pack(batch), group_advantages(rewards).reshape(-1)


@pytest.mark.parametrize("build", [_m1, _llama], ids=["m1", "llama"])
def test_param_groups_get_their_rates(build):
    model = build()
    head = {"lm_head.weight", "model.norm.weight"}
    groups = param_groups(model, lr=1e-4, lr_head=1e-2)
    named = {id(p): n for n, p in model.named_parameters()}
    assert [g["name"] for g in groups] == ["head", "body"]
    assert {named[id(p)] for p in groups[0]["params"]} == head
    assert {named[id(p)] for p in groups[1]["params"]} == set(named.values()) - head
    # lr 0 freezes a group: out of the optimizer, no gradient
    frozen = param_groups(build(), lr=0.0, lr_head=1e-3)
    assert [g["name"] for g in frozen] == ["head"]

    cfg = RLParams(lr=1e-4, lr_head=1e-2, warmup_updates=4, prompts_per_step=4, samples_per_prompt=4,
                   updates_per_batch=4)
    trainer = make_trainer(model, cfg, micro_batch=4)
    assert trainer.rates() == pytest.approx({"head": 1e-2 / 4, "body": 1e-4 / 4})
    data, _ = _batch(50)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    from model.logprobs import response_logprobs

    lp, _ = response_logprobs(model, data["prompts"], data["responses"])
    trainer.step(-(lp * data["mask"]).sum() / data["mask"].sum())
    grads = {n: p.grad for n, p in model.named_parameters()}
    # AdamW's first update is -rate * g / (|g| + eps) on every weight, at the warmed-up rate: with eps
    # 1e-15 that is -rate * sign(g) except where |g| is itself near 1e-15 (an expert the batch hardly
    # routes to); up to the fp32 rounding of the new weight, one ulp of its magnitude
    for n, p in model.named_parameters():
        rate = 1e-2 / 4 if n in head else 1e-4 / 4
        ulp = torch.finfo(torch.float32).eps * torch.maximum(before[n].abs(), p.detach().abs()).clamp(min=1.0)
        g = grads[n].double()
        error = (p.detach().double() - before[n].double() + rate * g / (g.abs() + cfg.adam_eps)).abs()
        assert bool((error <= ulp + 1e-4 * rate).all()), f"{n}: off by {float((error - ulp).max()):.3g} beyond an ulp"
    for _ in range(5):
        trainer.step(-(response_logprobs(model, data["prompts"], data["responses"])[0] * data["mask"]).sum() / data["mask"].sum())
    assert trainer.rates() == pytest.approx({"head": 1e-2, "body": 1e-4})


@pytest.mark.parametrize("build", [_m1, _llama], ids=["m1", "llama"])
def test_first_update_has_importance_ratios_of_exactly_one(build):
    model = build()
    data, adv = _batch(50)
    cfg = RLParams(lr=1e-3, lr_head=1e-2, warmup_updates=0, prompts_per_step=4, samples_per_prompt=4,
                   updates_per_batch=4)
    trainer = make_trainer(model, cfg, micro_batch=4)
    minibatches = group_minibatches(4, 4, 4, torch.Generator().manual_seed(0))
    model.train()
    old, _ = old_policy_logprobs(model, data, minibatches)
    upd = update_policy(trainer, cfg, data, adv, old, minibatches)
    assert upd["skipped"] == [0.0] * 4
    assert upd["is_weight_mean"][0] == 1.0 and upd["clip_fraction"][0] == 0.0  # on-policy: r = 1 exactly
    assert all(r != 1.0 for r in upd["is_weight_mean"][1:])  # later updates are off-policy


def test_tracker_without_mlflow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError (the GPU image)
    t = RunTracker(tmp_path, experiment="x", run_name="y", params={})
    t.log(1, {"a": 1.0, "b": float("nan")})
    t.close()
    assert read_metrics(tmp_path) == [{"step": 1, "a": 1.0}] and t.run_id is None


def test_train_logs_metrics_to_mlflow_and_exports(setup, tmp_path):
    root, params = setup
    _run(root, params, tmp_path / "run", "algorithm=cispo", "steps=2")
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
    # both runs through the command line: the same torch thread count (rl.threads), so the same sums
    subprocess.run(_cli(root, params, tmp_path / "whole", steps, "algorithm=grpo"), cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    whole = read_metrics(tmp_path / "whole")
    # the report's GRPO baseline: one sampling round (no dynamic sampling), reward = task score (no
    # overlong penalty, though most replies here run into rl.overlong_buffer)
    assert all(r["rollout/rounds"] == 1 and r["rollout/dropped_groups"] == 0 for r in whole[1:])
    assert all(r["reward/mean"] == r["accuracy/mean"] for r in whole[1:])

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(root, params, killed, steps, "algorithm=grpo"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step_000002" / "state.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    reached = load_state(latest_checkpoint(killed / "checkpoints"))["step"]
    assert 2 <= reached < steps

    subprocess.run(_cli(root, params, killed, steps, "algorithm=grpo"), cwd=ROOT, check=True,
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
        procs.append(subprocess.Popen(_cli(root, params, tmp_path / "ds", 2, "train_engine=deepspeed",
                                           "updates_per_batch=1"), cwd=ROOT,
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
    assert (rows[1]["train/lr_head"], rows[1]["train/lr_body"]) == pytest.approx((1e-3 / 2, 1e-4 / 2))  # warmup
    assert all(r["train/grad_norm"] >= 0 for r in rows[1:] if not r["train/skipped"])
    ckpt = latest_checkpoint(tmp_path / "ds" / "checkpoints")
    assert ckpt.name == "step_000002" and (ckpt / "ds").is_dir()
