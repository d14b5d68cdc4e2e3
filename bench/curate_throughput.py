"""python -m bench.curate_throughput --rows 1000000 --work runs/curate_bench --output bench/results/curate_throughput.md

Throughput and peak memory of the curation stages on short QA rows (issue #5's target: clean +
exact/MinHash dedup + n-gram decontamination of 1M rows in under 5 minutes with peak memory under
4 GB on this 2-core machine). Rows come from ``tasks.curate.synth``'s training templates, with 5%
exact and 5% near copies and 2% malformed rows mixed in; each original gets a unique problem number,
because the templates' own number ranges repeat problems at this scale (the number guard then keeps
template siblings apart, while they still collide in LSH buckets: a worst case for candidate pairs). Each stage runs on the previous one's
``kept.parquet`` in its own process, which reports its wall time and peak resident memory
(``ru_maxrss``). The embedding-based steps (SemDeDup, embedding decontamination) and the
math-verify question stage are measured separately on a ``--sample``-row slice, in rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl


def make_rows(n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` short QA rows: template problems plus exact copies, near copies and malformed rows."""
    from tasks.curate.synth import TRAIN_TEMPLATES

    r = random.Random(seed)
    qs, ans = [], []
    while len(qs) < n:
        u = r.random()
        if u < 0.05 and qs:
            i = r.randrange(len(qs))
            qs.append(qs[i].lower())
            ans.append(ans[i])
        elif u < 0.10 and qs:
            i = r.randrange(len(qs))
            qs.append(qs[i].replace(" ", " please ", 1))
            ans.append(ans[i])
        elif u < 0.12:
            qs.append(r.choice(TRAIN_TEMPLATES)(r)[0][0][:20] + "...")
            ans.append("1")
        else:
            variants, a = r.choice(TRAIN_TEMPLATES)(r)
            qs.append(f"Problem {len(qs)}. {variants[0]}")  # the templates alone repeat at this scale
            ans.append(a)
    return pl.DataFrame({"id": [f"r{i}" for i in range(n)], "question": qs, "answer": ans,
                         "source": [("forum", "textbook", "contest")[i % 3] for i in range(n)]})


def worker(stage: str, inp: str, out: str, extra: str) -> None:
    """Run one stage in this process and print its report plus peak memory as one JSON line."""
    import torch

    torch.set_num_threads(1)
    kw = json.loads(extra)
    benchmarks = kw.pop("benchmarks", None)
    t = time.perf_counter()
    if stage == "clean":
        from tasks.curate.clean import CleanParams as Params
        from tasks.curate.clean import clean as fn
    elif stage == "dedup":
        from tasks.curate.dedup import DedupParams as Params
        from tasks.curate.dedup import dedup as fn
    elif stage == "decontaminate":
        from tasks.curate.decontaminate import DecontaminateParams as Params
        from tasks.curate.decontaminate import decontaminate as fn
    else:
        from tasks.curate.questions import QuestionsParams as Params
        from tasks.curate.questions import questions as fn
    extra_kw = {"benchmarks": benchmarks} if benchmarks is not None else {}
    report = fn(inp, out, Params(**kw), **extra_kw)
    report.pop("removed", None)
    report["wall_s"] = time.perf_counter() - t
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("REPORT " + json.dumps(report))


def run_stage(stage: str, inp: Path, out: Path, **kw) -> dict:
    """The stage's report from a fresh process (so peak memory is the stage's own)."""
    cmd = [sys.executable, "-m", "bench.curate_throughput", "--worker", stage, str(inp), str(out), json.dumps(kw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"{stage} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.curate_throughput", description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=2000, help="rows for the embedding and math-verify steps")
    ap.add_argument("--work", default="runs/curate_bench")
    ap.add_argument("--output", default=None, help="markdown file for the table")
    ap.add_argument("--worker", nargs=4, metavar=("STAGE", "IN", "OUT", "KWARGS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    src = work / "input.parquet"
    make_rows(args.rows).write_parquet(src)
    from tasks.curate.synth import RawMathParams, write

    bench_file = write(work / "synth", RawMathParams(n_base=200, seed=5))["benchmark"]  # a small math test set beside HumanEval
    gen_s = time.perf_counter() - t

    rows = []
    main_stages = [
        ("clean", src, {}),
        ("dedup", work / "clean" / "kept.parquet", {"semantic": False}),
        ("decontaminate", work / "dedup" / "kept.parquet", {"embedding": False, "benchmarks": [str(bench_file)]}),
    ]
    for stage, inp, kw in main_stages:
        rep = run_stage(stage, inp, work / stage, **kw)
        rows.append((stage + (" (exact + MinHash)" if stage == "dedup" else " (n-gram 13, 8)" if stage == "decontaminate" else ""), rep))
        print(stage, {k: rep[k] for k in ("rows_in", "kept", "wall_s", "peak_rss_mb")}, flush=True)
    total = sum(r["wall_s"] for _, r in rows)
    peak = max(r["peak_rss_mb"] for _, r in rows)

    sample = work / "sample.parquet"
    pl.read_parquet(work / "clean" / "kept.parquet").head(args.sample).write_parquet(sample)
    side = [
        ("dedup: SemDeDup embeddings", "dedup", {"exact": False, "near": False, "semantic": True}),
        ("decontaminate: embedding", "decontaminate", {"ngram_sizes": [], "benchmarks": [str(bench_file)]}),
        ("questions (math-verify)", "questions", {}),
    ]
    side_rows = []
    for name, stage, kw in side:
        rep = run_stage(stage, sample, work / f"sample_{stage}", **kw)
        side_rows.append((name, rep))
        print(name, {k: rep[k] for k in ("rows_in", "wall_s", "peak_rss_mb")}, flush=True)

    cpu = f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    lines = [
        f"Curation throughput, `python -m bench.curate_throughput --rows {args.rows} --sample {args.sample}`,",
        f"{time.strftime('%Y-%m-%d')}, {cpu}, shared with other jobs while it ran. Input generation took {gen_s:.0f} s (not counted).",
        "",
        "| stage | rows in | kept | wall s | rows/s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['rows_in']:,} | {r['kept']:,} | {r['wall_s']:.1f} | {r['rows_in'] / r['wall_s']:,.0f} | {r['peak_rss_mb']:.0f} |")
    lines.append(f"| **total** | {args.rows:,} | {rows[-1][1]['kept']:,} | **{total:.1f}** | {args.rows / total:,.0f} | **{peak:.0f}** (max) |")
    lines += ["", f"Model-based steps on {args.sample:,} rows (wall time includes loading the model and, for",
              "decontamination, embedding HumanEval and the test set):", "",
              "| step | rows | wall s | rows/s | peak RSS MB | detail |", "|---|---|---|---|---|---|"]
    for name, r in side_rows:
        detail = r.get("seconds_by_detector") or r.get("seconds_by_method") or {}
        if "embedding_rows_per_s" in r and r["embedding_rows_per_s"]:
            detail = {"embedding rows/s": r["embedding_rows_per_s"]}
        lines.append(f"| {name} | {r['rows_in']:,} | {r['wall_s']:.1f} | {r['rows_in'] / r['wall_s']:,.0f} | "
                     f"{r['peak_rss_mb']:.0f} | {json.dumps(detail)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
