"""python -m bench.sft_workers --output bench/results/sft_workers.md

An SFT optimizer step of the tiny default (``sft`` in params.yaml: its task mix, batch size and
micro-batches, a fresh tiny M1 and tokenizer) three ways on 2 CPU cores: one process on 2 torch
threads (``sft.workers: 1``), one process on 1 thread, and ``model.sharded.ShardedBackward`` over 2
single-thread processes (``sft.workers: 2``). Each way runs the same ``--steps`` batches (a step is
``accumulate`` + AdamW), the ways interleaved step by step so that a change of the machine's speed
hits all of them; reports the median and the speedup over the first way.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

import torch
from tqdm import tqdm

from model.sharded import ShardedBackward
from model.tokenizer import train_tokenizer
from tasks.config import load
from tasks.train.policy import build_policy, encode_prompt, encode_reply
from tasks.train.sft import PARAMS, accumulate, sft_pairs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--steps", type=int, default=12, help="timed steps per way (after one warm-up step)")
    ap.add_argument("--output", type=Path, help="write the table here as well")
    args = ap.parse_args(argv)
    params = load(args.params, PARAMS, [])["sft"]
    pairs = sft_pairs(params)
    tok = train_tokenizer((q + " " + r for q, r in pairs), params.vocab_size, tempfile.mkdtemp(),
                          split_digits=params.split_digits)
    torch.manual_seed(params.seed)
    model = build_policy(params.model, tok).train()
    examples = [(encode_prompt(tok, q) + encode_reply(tok, r), len(encode_prompt(tok, q))) for q, r in pairs]
    rng = random.Random(0)
    batches = [rng.sample(examples, params.batch_size) for _ in range(args.steps + 1)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    cpu = torch.device("cpu")
    ways = {"1 process, 2 threads": (2, None), "1 process, 1 thread": (1, None), "2 processes, 1 thread each": (2, 2)}
    times: dict[str, list[float]] = {w: [] for w in ways}
    with closing(ShardedBackward(model, workers=2)) as pool:
        for i, batch in enumerate(tqdm(batches, desc="sft steps")):
            for way, (threads, workers) in ways.items():
                torch.set_num_threads(threads)
                t = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                accumulate(model, batch, params.micro_batches, tok.pad_token_id, cpu, pool if workers else None)
                opt.step()
                if i:
                    times[way].append(time.perf_counter() - t)
    base = statistics.median(times[next(iter(ways))])
    lines = [f"SFT step of the tiny default ({params.batch_size} sequences, {params.micro_batches} micro-batches), "
             f"median of {args.steps}; {platform.processor() or platform.machine()}, torch {torch.__version__}", "",
             "| way | s / step | speedup |", "|---|---|---|"]
    for way, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"| {way} | {med:.3f} | {base / med:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(f"`python -m bench.sft_workers --output {args.output}`\n\n{table}\n")


if __name__ == "__main__":
    main()
