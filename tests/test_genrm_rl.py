"""The GenRM inside RL (report 4.2-4.3): general tasks enter in the curriculum's later phase, their
replies judged in batches by a real (tiny) judge, judge throughput and the monitor's reading logged
every step, the monitor's state carried through checkpoints."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from tasks.config import load
from tasks.curate.rl_data import write_generated
from tasks.envs.genrm.data import length_pair, write_sft_jsonl
from tasks.envs.genrm.finetune import train_judge
from tasks.envs.genrm.general import INSTRUCT, OPEN_PROMPT
from tasks.envs.genrm.params import GenRMParams
from tasks.train.checkpoint import latest_checkpoint, load_state
from tasks.train.rl.train import PARAMS, train_rl
from tasks.train.sft import SFTParams, SFTTask, train_sft
from tasks.train.tracking import read_metrics

LLAMA = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 512}


def test_general_tasks_enter_in_the_later_phase_and_are_judged_in_batches(tmp_path: Path):
    write_generated(tmp_path / "data", {"arithmetic": 1}, items=32)
    # a policy that has seen the reply format of both kinds of task (so its replies carry an answer to judge)
    mix = {"arithmetic": SFTTask(levels=(1,), examples=64), "open_prompt": SFTTask(levels=(1,), examples=64)}
    train_sft(SFTParams(model=LLAMA, tasks=mix, steps=30, batch_size=16, lr=3e-3, warmup_steps=2, vocab_size=300,
                        device="cpu"), tmp_path / "sft")
    # a judge that learned one verdict, "similar", in both positions: every answered general reply
    # gets a counted 0.5 from it
    p = GenRMParams.from_mapping({"train": {"model": LLAMA, "vocab_size": 300, "steps": 25, "batch_size": 16,
                                            "lr": 3e-3, "warmup_steps": 2}, "judge": {"max_new_tokens": 16}})
    rng = random.Random(0)
    ties = [length_pair(rng, p.data, i) for i in range(32)]
    for e in ties:
        e.rationale = "A 1, B 1"
    genrm = tmp_path / "genrm"
    train_judge(p, write_sft_jsonl(ties, tmp_path / "ties.jsonl"), genrm / "judge")
    pool = OPEN_PROMPT.generate(4, seed=0, difficulty=1) + INSTRUCT.generate(4, seed=0, difficulty=1)
    for it in pool:
        it.update(task="open_prompt" if it["id"].startswith("open") else "instruct", answer=it["metadata"]["candidates"][0])
    (genrm / "general.jsonl").write_text("".join(json.dumps(it) + "\n" for it in pool))

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"rl": {
        "prompts_per_step": 4, "samples_per_prompt": 2, "updates_per_batch": 2, "max_new_tokens": 48,
        "overlong_buffer": 4, "max_sampling_rounds": 1, "eval_every": 0, "checkpoint_every": 1, "format_weight": 0.0,
        "threads": 1,  # one sampling stream: the tiny policy's general replies that carry an answer depend on it
        "curriculum": [{"steps": 1, "weights": {"arithmetic": 1.0}},
                       {"steps": 2, "weights": {"arithmetic": 1.0, "open_prompt": 2.0, "instruct": 2.0}}]},
        "genrm": {"judge": {"max_new_tokens": 16}, "monitor": {"window": 2, "min_samples": 4}}}))
    loaded = load(params, PARAMS, ["steps=3"])
    train_rl(loaded["rl"], tmp_path / "sft" / "policy", tmp_path / "data", tmp_path / "rl", loaded["envs"],
             genrm=loaded["genrm"], genrm_dir=genrm)

    rows = read_metrics(tmp_path / "rl")
    assert [r["curriculum/phase"] for r in rows] == [0, 1, 1]
    assert not any(k.endswith(("open_prompt", "instruct")) for k in rows[0])  # phase 1: rule-verified only
    later = [r for r in rows[1:] if "reward/open_prompt" in r or "reward/instruct" in r]
    assert later, rows[1:]
    judged = sum(r["genrm/judge/prompts"] for r in rows)
    assert judged > 0 and all(r["genrm/judge/prompts_per_s"] > 0 for r in rows if r["genrm/judge/prompts"])
    assert all(0.0 <= r["genrm/unscored_rate"] <= 1.0 and "genrm/monitor/length_corr" in r for r in rows)
    assert any(r["genrm/unscored_rate"] < 1.0 for r in later if r["genrm/judge/prompts"])  # verdicts counted
    state = load_state(latest_checkpoint(tmp_path / "rl" / "checkpoints"))
    assert state["genrm"]["judge_dir"] == str(genrm / "judge" / "policy") and state["genrm"]["recalibrations"] == 0
    assert len(state["genrm"]["monitor"]["steps"]) == 2  # the window: the last two steps' judged replies
