"""SFT on worked solutions of the task mix, for a tiny HF Llama and for our M1 tiny preset: the mix
(held-out questions left out, every solution verified), micro-batches that give the whole batch's
gradient (in this process or dealt to worker processes), a digit-splitting tokenizer, and a killed run that resumes to the uninterrupted result."""

from __future__ import annotations

import json
from contextlib import closing

import pytest
import torch

from model.sharded import ShardedBackward
from tasks.envs.arithmetic import HELD_OUT_SEED, Arithmetic, is_held_out, worked_solution
from tasks.train.policy import encode_prompt, load_policy
from tasks.train.tracking import read_metrics
from tasks.config import ParamsError, load
from tasks.train.sft import SFTParams, SFTTask, accumulate, sft_pairs, train_sft

ARITH1 = {"arithmetic": SFTTask(levels=(1,), examples=100)}

LLAMA = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128}


def test_arithmetic_items_verify_and_held_out_split():
    task = Arithmetic()
    train, held = task.generate(300, seed=0, difficulty=1), task.generate(20, seed=HELD_OUT_SEED, difficulty=1)
    assert all(not is_held_out(i["metadata"]["a"], i["metadata"]["b"]) for i in train)
    assert all(is_held_out(i["metadata"]["a"], i["metadata"]["b"]) for i in held)
    assert task.generate(5, seed=3, difficulty=4) == task.generate(5, seed=3, difficulty=4)
    item = {"answer": "1068"}
    assert task.verify(item, "<think>x</think><answer>1,068</answer>") == 1.0
    assert task.verify(item, "<think>x</think><answer>1067</answer>") == 0.0
    assert task.verify(item, "1068") == 0.0  # no answer tag
    with pytest.raises(ValueError, match="difficulty"):
        task.generate(1, seed=0, difficulty=9)


def test_worked_solution_format():
    assert worked_solution(347, 589) == "<think>7+9+0=16 4+8+1=13 3+5+1=9</think><answer>936</answer>"
    assert worked_solution(95, 7) == "<think>5+7+0=12 9+0+1=10</think><answer>102</answer>"


def test_sft_llama_lowers_loss_and_saves_a_loadable_policy(tmp_path):
    cfg = SFTParams(model=LLAMA, tasks={"arithmetic": SFTTask(levels=(2,), examples=200)}, steps=40, batch_size=16,
                    lr=3e-3, warmup_steps=5, log_every=10, vocab_size=300, device="cpu")
    train_sft(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert rows[-1]["sft/loss"] < 0.6 * rows[0]["sft/loss"]
    model, tok = load_policy(tmp_path / "policy")
    assert type(model).__name__ == "LlamaForCausalLM"
    from model.generation import SamplingParams, TorchEngine

    out = TorchEngine(model, pad_token_id=tok.pad_token_id).generate(
        [encode_prompt(tok, "12+34=")], SamplingParams(max_new_tokens=8), generator=torch.Generator().manual_seed(0)
    )
    assert 1 <= len(out.tokens[0]) <= 8 and len(out.logprobs[0]) == len(out.tokens[0])


def test_sft_m1_tiny_one_step(tmp_path):
    cfg = SFTParams(model={"arch": "m1", "preset": "tiny"}, tasks={"arithmetic": SFTTask(levels=(1,), examples=16)},
                    steps=1, warmup_steps=0, batch_size=4, log_every=1, vocab_size=300, device="cpu")
    metrics = train_sft(cfg, tmp_path)
    assert torch.isfinite(torch.tensor(metrics["sft/loss"]))
    model, _ = load_policy(tmp_path / "policy")
    assert type(model).__name__ == "M1ForCausalLM"


def test_sft_config_and_data_errors(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("sft:\n  steps: 7\n  batch: 3\n")
    with pytest.raises(ParamsError, match="params.yaml: sft.batch: unknown key"):
        load(params, {"sft": SFTParams})
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"question": "1+1="}) + "\n")
    with pytest.raises(ValueError, match="pairs.jsonl:1: a row needs"):
        sft_pairs(SFTParams(data=str(bad)))


def test_killed_sft_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL a real SFT process after its second checkpoint; the rerun ends where one run does."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import yaml

    from tasks.train.checkpoint import latest_checkpoint, load_state

    root = Path(__file__).resolve().parents[1]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"sft": {
        "model": LLAMA, "tasks": {"arithmetic": {"levels": [1], "examples": 64}}, "steps": 10, "batch_size": 16,
        "lr": 3e-3, "warmup_steps": 2,
        "log_every": 3, "checkpoint_every": 2, "keep_checkpoints": 2, "vocab_size": 300, "device": "cpu"}}))

    def cli(out):
        return [sys.executable, "-m", "tasks.train.sft", "--params", str(params), "--output", str(out)]

    subprocess.run(cli(tmp_path / "whole"), cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(killed), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step_000004" / "state.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its second checkpoint"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert 4 <= load_state(latest_checkpoint(killed / "checkpoints"))["step"] < 10
    assert not (killed / "policy").exists()

    subprocess.run(cli(killed), cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert [r["step"] for r in read_metrics(killed)] == [3, 6, 9, 10]
    assert read_metrics(killed) == read_metrics(tmp_path / "whole")
    a = torch.load(latest_checkpoint(tmp_path / "whole" / "checkpoints") / "model.pt")
    b = torch.load(latest_checkpoint(killed / "checkpoints") / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_mix_is_worked_solutions_of_every_task_without_held_out_questions():
    from tasks.envs.base import format_reward
    from tasks.envs.heldout import is_held_out
    from tasks.envs.registry import get_task

    mix = {"arithmetic": SFTTask(levels=(2,), examples=60), "dyck_languages": SFTTask(levels=(1, 2), examples=41),
           "code_io": SFTTask(levels=(1,), examples=8)}
    pairs = sft_pairs(SFTParams(tasks=mix))
    by_question = {}
    for name, spec in mix.items():
        for i, lv in enumerate(spec.levels):  # examples spread evenly over the levels; 7 = sft.item_seed
            count = spec.examples // len(spec.levels) + (i < spec.examples % len(spec.levels))
            for it in get_task(name).generate(count, 7, lv):
                by_question[it["question"]] = (name, it)
    held = [q for q in by_question if is_held_out(q)]
    assert held, "a sample this size has held-out questions to drop"
    assert {q for q, _ in pairs} == set(by_question) - set(held)
    for q, reply in pairs:
        name, item = by_question[q]
        assert format_reward(reply) == 1.0 and get_task(name).verify(item, reply) == 1.0, (name, reply)
    with pytest.raises(ParamsError, match=r"sft.tasks.sudoku = .*metadata\['solution'\]"):
        sft_pairs(SFTParams(tasks={"sudoku": SFTTask(levels=(1,), examples=2)}))
    with pytest.raises(ParamsError, match=r"sft.tasks.arithmetic.levels = \[9\]: allowed: levels inside"):
        sft_pairs(SFTParams(tasks={"arithmetic": SFTTask(levels=(9,), examples=2)}))


def test_micro_batches_give_the_whole_batch_gradient(tmp_path):
    import random

    from tasks.train.policy import build_policy
    from tasks.train.sft import _batch
    from model.tokenizer import train_tokenizer

    tok = train_tokenizer(["12+34= <think>2+4+0=6</think>"] * 4, 300, tmp_path)
    model = build_policy(LLAMA, tok)
    rng = random.Random(0)
    batch = [([rng.randrange(10, len(tok)) for _ in range(n)], rng.randrange(1, n - 2)) for n in (9, 30, 17, 55, 12, 40, 23)]
    ids, attn, labels = _batch(batch, tok.pad_token_id)
    whole = model(input_ids=ids, attention_mask=attn, labels=labels).loss
    whole.backward()
    want = [p.grad.clone() for p in model.parameters()]
    for pieces in (2, 3, 7):
        model.zero_grad()
        loss = accumulate(model, batch, pieces, tok.pad_token_id, torch.device("cpu"))
        assert loss == pytest.approx(whole.item(), rel=1e-5)
        assert all(torch.allclose(p.grad, w, atol=1e-6) for p, w in zip(model.parameters(), want))
    for workers, pieces in ((2, 3), (3, 1)):  # pieces dealt to processes; 1 micro-batch still gives each one
        with closing(ShardedBackward(model, workers=workers)) as pool:
            model.zero_grad()
            loss = accumulate(model, batch, pieces, tok.pad_token_id, torch.device("cpu"), pool)
        assert loss == pytest.approx(whole.item(), rel=1e-5)
        assert all(torch.allclose(p.grad, w, atol=1e-6) for p, w in zip(model.parameters(), want))


def test_tokenizer_splits_digits_but_merges_words(tmp_path):
    from model.tokenizer import train_tokenizer

    tok = train_tokenizer(["Maria has 582 apples and 317 pears"] * 50, 300, tmp_path, split_digits=True)
    assert tok.tokenize("582 apples") == ["5", "8", "2", "Ġapples"]
