"""python -m bench.rl_logprobs --policy runs/sft/policy --data data/rl --output bench/results/rl_logprobs.md

The RL update's log-probs on the tiny default, two ways: ``token_logprobs`` over whole sequences
(prompt + reply, right-padded to the minibatch's longest, as the RL loop computed them before) and
``response_logprobs`` (each distinct prompt once, its cache shared by its G replies, the LM head on
reply tokens only). A minibatch is ``--groups`` prompts drawn from the RL data's mix (equal weight
per task, as the default curriculum) with ``--samples`` replies each of 10-30 random tokens (the tiny
RL policy's replies average about 20). Times the old policy's pass (no grad) and an update's forward
and backward, median of ``--repeats`` minibatches, the two ways interleaved, on ``--threads`` threads.
Needs a pipeline run's SFT policy and RL data (``make run``, or the flow's ``--only`` up to rl_data).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

import polars as pl
import torch
from tqdm import tqdm

from model.logprobs import response_logprobs, token_logprobs
from tasks.train.policy import encode_prompt, load_policy


def whole_sequences(prompts: list[list[int]], replies: list[list[int]]) -> tuple[torch.Tensor, ...]:
    """Right-padded prompt + reply ids, attention mask and reply mask (the old packing)."""
    width = max(len(p) + len(r) for p, r in zip(prompts, replies))
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    mask = torch.zeros(len(prompts), width)
    for i, (p, r) in enumerate(zip(prompts, replies)):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attn[i, : len(p) + len(r)] = 1
        mask[i, len(p) : len(p) + len(r)] = 1
    return ids, attn, mask


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="runs/sft/policy")
    ap.add_argument("--data", default="data/rl")
    ap.add_argument("--groups", type=int, default=4, help="prompts per minibatch (rl: 16 prompts / 4 updates)")
    ap.add_argument("--samples", type=int, default=8, help="replies per prompt (rl.samples_per_prompt)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", type=Path)
    args = ap.parse_args(argv)
    for path in (Path(args.policy), Path(args.data) / "mix.parquet"):
        if not path.exists():
            raise SystemExit(f"{path}: missing; run the pipeline up to rl_data first (make run)")
    torch.set_num_threads(args.threads)
    model, tok = load_policy(args.policy)
    model.train()
    mix = pl.read_parquet(Path(args.data) / "mix.parquet")
    by_task: dict[str, list[list[int]]] = {}
    for row in mix.iter_rows(named=True):
        by_task.setdefault(row["task"], []).append(encode_prompt(tok, row["question"]))
    tasks = sorted(by_task)
    rng = random.Random(args.seed)
    vocab = len(tok)

    def minibatch() -> tuple[list[list[int]], list[list[int]]]:
        prompts, replies = [], []
        for _ in range(args.groups):
            p = rng.choice(by_task[rng.choice(tasks)])
            for _ in range(args.samples):
                prompts.append(p)
                replies.append([rng.randrange(3, vocab) for _ in range(rng.randint(10, 30))])
        return prompts, replies

    times: dict[str, list[float]] = {k: [] for k in ("old_whole", "old_shared", "update_whole", "update_shared")}
    tokens = {"whole": 0, "real": 0, "distinct": 0}
    for rep in tqdm(range(args.repeats + 2), desc="minibatches"):
        prompts, replies = minibatch()
        ids, attn, mask = whole_sequences(prompts, replies)
        if rep >= 2:  # two warm-up minibatches
            tokens["whole"] += ids.numel()
            tokens["real"] += int(attn.sum())
            tokens["distinct"] += sum(len(p) for p in {tuple(p) for p in prompts}) + sum(len(r) for r in replies)

        def old_whole():
            with torch.no_grad():
                token_logprobs(model, ids, attn)

        def old_shared():
            with torch.no_grad():
                response_logprobs(model, prompts, replies)

        def update_whole():
            lp, _ = token_logprobs(model, ids, attn)
            (-(lp * mask).sum() / mask.sum()).backward()

        def update_shared():
            lp, _ = response_logprobs(model, prompts, replies)
            (-lp.sum() / sum(len(r) for r in replies)).backward()

        for name, fn in (("old_whole", old_whole), ("old_shared", old_shared),
                         ("update_whole", update_whole), ("update_shared", update_shared)):
            model.zero_grad(set_to_none=True)
            t = timed(fn)
            if rep >= 2:
                times[name].append(t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    n = args.repeats
    lines = [
        f"# RL log-probs: whole sequences against shared prompts ({args.groups} prompts x {args.samples} replies "
        f"a minibatch, {args.threads} threads)",
        "",
        f"Tokens computed a minibatch: whole sequences padded {tokens['whole'] / n:.0f}, whole sequences real "
        f"{tokens['real'] / n:.0f}, shared prompts {tokens['distinct'] / n:.0f} (each distinct prompt once).",
        "",
        "| pass | whole sequences (ms) | shared prompts (ms) | speedup |",
        "|---|---|---|---|",
        f"| old policy (no grad) | {med['old_whole']:.0f} | {med['old_shared']:.0f} | {med['old_whole'] / med['old_shared']:.2f}x |",
        f"| update (forward + backward) | {med['update_whole']:.0f} | {med['update_shared']:.0f} | "
        f"{med['update_whole'] / med['update_shared']:.2f}x |",
        "",
        f"Median of {n} minibatches; policy {args.policy}, data {args.data}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
