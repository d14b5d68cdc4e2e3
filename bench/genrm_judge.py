"""python -m bench.genrm_judge --configs m1:300:2e-3,llama:300:2e-3 [--jobs 4] [--device cpu] [--out FILE]

How good a judge the genrm stage's data makes, by model and training length: each config
``ARCH:STEPS:LR`` (ARCH: ``m1`` = the tiny M1 preset, ``llama`` = a tiny 4-layer Llama) trains a
fresh judge through ``tasks.envs.genrm.finetune.train_judge`` on the default judge data
(``genrm.data`` defaults) and measures it on the held-out sets: five-grade accuracy, the
correct/incorrect split, pairwise accuracy, position-swap agreement and the longer-wins rate on
equal-quality pairs (0.5 = unbiased). Configs run in parallel processes (``--jobs``); prints a
markdown table (also written to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SPECS = {
    "m1": {"arch": "m1", "preset": "tiny"},
    "llama": {"arch": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024},
}


def one(config: str, device: str) -> dict:
    """Train and measure one judge (in this process)."""
    import torch

    from tasks.envs.genrm.data import build_examples, write_sft_jsonl
    from tasks.envs.genrm.evaluate import grade_accuracy, longer_wins, pair_accuracy
    from tasks.envs.genrm.finetune import train_judge
    from tasks.envs.genrm.judge import Judge
    from tasks.envs.genrm.params import GenRMParams

    torch.set_num_threads(1)
    arch, steps, lr = config.split(":")
    p = GenRMParams.from_mapping({"train": {"model": SPECS[arch], "steps": int(steps), "lr": float(lr),
                                            "device": device, "checkpoint_every": int(steps)},
                                  "judge": {"device": device}})
    with tempfile.TemporaryDirectory() as tmp:
        data = write_sft_jsonl(build_examples(p.data, p.seed, "train")["train"], Path(tmp) / "train.jsonl")
        t0 = time.perf_counter()
        judge = Judge.load(train_judge(p, data, Path(tmp) / "judge"), p.judge)
        seconds = time.perf_counter() - t0
        held_out = build_examples(p.data, p.seed, "eval")
        g, pr, ln = (grade_accuracy(judge, held_out["grade"]), pair_accuracy(judge, held_out["pairs"]),
                     longer_wins(judge, held_out["length"]))
    return {"config": config, "train_s": round(seconds, 1), "grade_acc": g["accuracy"],
            "correct_acc": g["correctness_accuracy"], "pair_acc": pr["accuracy"], "swap_agree": pr["swap_agreement"],
            "longer_wins": ln["longer_wins"], "ties": ln["ties"], "malformed": g["malformed"] + pr["malformed"],
            "grade_by_kind": {k: round(v["accuracy"], 2) for k, v in g["by_kind"].items()},
            "pair_by_kind": {k: round(v["accuracy"], 2) for k, v in pr["by_kind"].items()}}


def table(rows: list[dict]) -> str:
    cols = ["config", "train_s", "grade_acc", "correct_acc", "pair_acc", "swap_agree", "longer_wins", "ties", "malformed"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) and c != "train_s" else str(r[c])
                                       for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.genrm_judge", description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", required=True, help="comma-separated ARCH:STEPS:LR")
    ap.add_argument("--jobs", type=int, default=1, help="configs trained at once (one process each)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", help="also write the table and the per-kind accuracies here (markdown)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.device)))
        return
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def launch(config: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "bench.genrm_judge", "--configs", config, "--one", config,
                               "--device", args.device], capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"{config} failed:\n{done.stderr[-2000:]}")
        print(f"done {config}", file=sys.stderr, flush=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(launch, args.configs.split(",")))
    text = table(rows) + "\n\n" + "\n".join(f"- {r['config']}: grade {r['grade_by_kind']}; pairs {r['pair_by_kind']}"
                                            for r in rows) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
