"""python -m bench.nucleus --policy runs/sft/policy --data data/rl --output bench/results/nucleus.md

Top-p 0.95 sampling (calibrate, difficulty, GenRM's candidates, the evaluations) two ways:
``nucleus_by_sort`` sorts the whole vocabulary of every row, ``nucleus`` cuts from the top k and sorts
only the rows whose cut is not clear. Two measurements, one thread:

- the cut alone on [64, V] rows of fp32 probabilities, peaked (a trained policy's) and flat (an
  untrained one's, every row past the top k), median of ``--repeats``;
- whole ``TorchEngine.generate`` calls of the policy on the RL data's held-out questions (``--calls``
  calls of 16 questions x 4 samples, 96 new tokens), the two ways interleaved: seconds, whether every
  token and log-prob is equal, and the share of decode steps in which some row took the sort.

Needs a pipeline run's policy and RL data (``make run``, or the flow's ``--only`` up to rl_data).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

import model.generation as generation
from model.generation import SamplingParams, TorchEngine, nucleus, nucleus_by_sort
from tasks.train.policy import encode_prompt, load_policy


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


class Counting:
    """``nucleus`` that counts its calls and those in which some row went to the sort."""

    def __init__(self) -> None:
        self.calls = self.sorted = 0

    def __call__(self, probs: torch.Tensor, top_p: float) -> torch.Tensor:
        self.calls += 1
        sort = generation.nucleus_by_sort

        def counted(*args):
            self.sorted += 1
            return sort(*args)

        generation.nucleus_by_sort = counted
        try:
            return nucleus(probs, top_p)
        finally:
            generation.nucleus_by_sort = sort


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="runs/sft/policy")
    ap.add_argument("--data", default="data/rl")
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--output", type=Path)
    args = ap.parse_args(argv)
    heldout = Path(args.data) / "heldout.jsonl"
    for path in (Path(args.policy), heldout):
        if not path.exists():
            raise SystemExit(f"{path} does not exist: run the pipeline up to rl_data first (make run)")
    torch.set_num_threads(1)
    lines = ["| case | sort (ms) | top-k (ms) | speed-up |", "|---|---|---|---|"]
    g = torch.Generator().manual_seed(0)
    for name, scale in (("64 peaked rows, V 1024", 8.0), ("64 flat rows, V 1024", 1.0)):
        probs = torch.softmax(torch.randn(64, 1024, generator=g) * scale, dim=-1)
        a = median_ms(lambda: nucleus_by_sort(probs, 0.95), args.repeats)
        b = median_ms(lambda: nucleus(probs, 0.95), args.repeats)
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f}x |")

    model, tok = load_policy(args.policy)
    rows = [json.loads(line) for line in heldout.read_text().splitlines() if line.strip()]
    random.Random(0).shuffle(rows)
    prompts = [encode_prompt(tok, r["question"]) for r in rows[: 16 * args.calls]]
    engine = TorchEngine(model, pad_token_id=tok.pad_token_id)
    params = SamplingParams(max_new_tokens=96, temperature=1.0, top_p=0.95, stop_token_ids=(tok.eos_token_id,))
    counting = Counting()

    def generate(cut, i: int):
        generation.nucleus = cut
        batch = [p for p in prompts[16 * i: 16 * (i + 1)] for _ in range(4)]
        t0 = time.perf_counter()
        out = engine.generate(batch, params, torch.Generator().manual_seed(i))
        return out, time.perf_counter() - t0

    try:
        generate(nucleus_by_sort, 0)
        seconds = {"sort": 0.0, "top-k": 0.0}
        equal = True
        for i in range(args.calls):
            a, ta = generate(nucleus_by_sort, i)
            b, tb = generate(nucleus, i)
            c, _ = generate(counting, i)
            seconds["sort"] += ta
            seconds["top-k"] += tb
            equal &= a.tokens == b.tokens == c.tokens and a.logprobs == b.logprobs
    finally:
        generation.nucleus = nucleus
    lines.append(f"| generate: {args.calls} calls of 64 rows, {Path(args.policy)} | {1e3 * seconds['sort']:.0f} | "
                 f"{1e3 * seconds['top-k']:.0f} | {seconds['sort'] / seconds['top-k']:.2f}x |")
    lines += ["", f"Every token and log-prob equal: {equal}. Decode steps in which some row took the sort: "
              f"{counting.sorted} of {counting.calls}."]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(f"`python -m bench.nucleus --policy {args.policy} --data {args.data}` "
                               f"({time.strftime('%Y-%m-%d %H:%M')}, one thread)\n\n{text}\n")


if __name__ == "__main__":
    main()
