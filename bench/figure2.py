"""python -m bench.figure2 --policy runs/sft/policy --work runs/figure2 [--seeds 6] [--steps 20] [--report-only]

The report's Figure 2 on the tiny preset: CISPO vs DAPO vs GRPO from the same SFT policy, with 16
off-policy updates per generation batch (report section 3.1: "16 rounds of off-policy updates per
generation batch"), so the importance-sampling ratios move away from 1 and the clip ranges bind.
The task is arithmetic alone (2 digits; ``--data``, default: ``WORK/data`` generated once by
``tasks.curate.rl_data.write_generated``), with 48-token replies and no format reward; every other
setting is params.yaml's ``rl`` section (the ``make run`` defaults: parameter groups, warmup, each
algorithm's ``rl.algorithms.<name>`` entry: GRPO is the report's baseline without dynamic sampling
or overlong penalty).

Runs go one at a time, seed by seed (cispo, dapo, grpo for seed 0, then seed 1, ...), each as its
own ``python -m tasks.train.rl.train`` process into ``WORK/<algorithm>-seed<k>``; a run killed
half-way resumes from its checkpoint when the bench is started again, and finished runs are
skipped. After every run the table (``--output``, default bench/results/figure2.md) and the plot
(``--figure``, default docs/figures/figure2.png) are rewritten from every run finished so far, so a
crash loses at most the run in progress. ``--report-only`` rewrites them without training.

Held-out accuracy is the data's arithmetic held-out items (``heldout.jsonl``; the same items and
sampling seed for every run);
the interval at each step is the 95% t-interval of the mean over seeds (it holds the seed-to-seed
spread of training and the eval's sampling noise together).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tasks.train.tracking import read_metrics

ALGORITHMS = ("cispo", "dapo", "grpo")
COLORS = {"cispo": "tab:red", "dapo": "tab:blue", "grpo": "tab:green"}
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def run_dir(work: Path, algorithm: str, seed: int) -> Path:
    return work / f"{algorithm}-seed{seed}"


def finished(run: Path, steps: int) -> bool:
    return (run / "policy" / "config.json").exists() and any(r["step"] == steps for r in read_metrics(run))


def train(args, algorithm: str, seed: int) -> tuple[float, float]:
    """One run in its own process (resuming from its checkpoint if one is there); its wall and CPU
    seconds (the CPU time is what the run costs on a shared machine; wall time depends on the load)."""
    sets = {"algorithm": algorithm, "seed": seed, "steps": args.steps, "updates_per_batch": args.updates,
            "curriculum": f"[{{steps: {args.steps}, weights: {{arithmetic: 1.0}}}}]", "max_new_tokens": 48,
            "format_weight": 0.0, "eval_every": args.eval_every, "eval_prompts": args.eval_prompts,
            "eval_samples": args.eval_samples, "experiment": "m1-figure2", "run_name": f"figure2-{algorithm}-seed{seed}"}
    cmd = [sys.executable, "-m", "tasks.train.rl.train", "--policy", str(args.policy), "--data", str(args.data),
           "--params", str(args.params), "--output", str(run_dir(args.work, algorithm, seed))]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    print(" ".join(cmd), flush=True)
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (nan for a single value)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), T975.get(len(x) - 1, 1.96) * float(x.std(ddof=1)) / math.sqrt(len(x))


def first_step_reaching(steps: list[int], accuracy: list[float], target: float) -> float | None:
    """The first step where the curve reaches ``target``, linear between evaluations; None if never."""
    for i, (s, a) in enumerate(zip(steps, accuracy)):
        if a >= target:
            if i == 0:
                return float(s)
            s0, a0 = steps[i - 1], accuracy[i - 1]
            return s0 + (target - a0) / (a - a0) * (s - s0)
    return None


def collect(work: Path, steps: int, seeds: int) -> dict[str, dict[int, list[dict]]]:
    """Metrics rows of every finished run, by algorithm and seed."""
    runs: dict[str, dict[int, list[dict]]] = {a: {} for a in ALGORITHMS}
    for a in ALGORITHMS:
        for s in range(seeds):
            if finished(run_dir(work, a, s), steps):
                runs[a][s] = read_metrics(run_dir(work, a, s))
    return runs


def curves(runs: dict[int, list[dict]]) -> tuple[list[int], np.ndarray]:
    """Eval steps and held-out accuracy ``[seeds, evals]`` of one algorithm's runs."""
    per_seed = [[(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r] for rows in runs.values()]
    steps = [s for s, _ in per_seed[0]]
    return steps, np.array([[a for _, a in c] for c in per_seed])


def per_update(rows: list[dict], key: str) -> float:
    """Mean of a per-step training metric over the steps that made updates."""
    vals = [r[key] for r in rows if key in r]
    return float(np.mean(vals)) if vals else float("nan")


def plot(runs: dict[str, dict[int, list[dict]]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax, ax_roll, ax_clip) = plt.subplots(1, 3, figsize=(15, 4.2))
    for a, seeds in runs.items():
        if not seeds:
            continue
        steps, acc = curves(seeds)
        mean = acc.mean(0) * 100
        half = np.array([interval(list(acc[:, j]))[1] for j in range(acc.shape[1])]) * 100
        ax.plot(steps, mean, marker="o", ms=3, color=COLORS[a], label=f"{a.upper()} ({len(seeds)} seeds)")
        if len(seeds) > 1:
            ax.fill_between(steps, mean - half, mean + half, color=COLORS[a], alpha=0.15)
        for row in acc:
            ax.plot(steps, row * 100, color=COLORS[a], lw=0.6, alpha=0.35)
        for key, axis in (("accuracy/mean", ax_roll), ("train/clip_fraction", ax_clip)):
            step_ids = sorted({r["step"] for rows in seeds.values() for r in rows if key in r})
            by_step = [np.mean([r[key] for rows in seeds.values() for r in rows if r["step"] == s and key in r]) for s in step_ids]
            smooth = np.convolve(by_step, np.ones(5) / 5, mode="valid") if len(by_step) >= 5 else np.asarray(by_step)
            axis.plot(step_ids[len(step_ids) - len(smooth):], smooth * 100, color=COLORS[a], label=a.upper())
    ax.set(xlabel="RL step (generation batches)", ylabel="held-out accuracy (%)",
           title="held-out accuracy: mean over seeds, 95% interval")
    ax_roll.set(xlabel="RL step", ylabel="rollout accuracy (%)", title="training-batch accuracy (5-step mean)")
    ax_clip.set(xlabel="RL step", ylabel="tokens clipped (%)", title="IS weight outside the clip range (5-step mean)")
    for axis in (ax, ax_roll, ax_clip):
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def report(args, runs: dict[str, dict[int, list[dict]]], walls: dict[str, tuple[float, float]]) -> str:
    lines = [
        f"# Figure 2 on the tiny preset: CISPO vs DAPO vs GRPO, {args.updates} off-policy updates per batch", "",
        f"`python -m bench.figure2 --policy {args.policy} --work {args.work} --seeds {args.seeds} --steps {args.steps}"
        f" --updates {args.updates} --eval-every {args.eval_every} --eval-prompts {args.eval_prompts}"
        f" --eval-samples {args.eval_samples}`, written {datetime.datetime.now():%Y-%m-%d %H:%M}, "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs. Every other setting: params.yaml `rl`. "
        f"Held-out: {args.eval_prompts} arithmetic items x {args.eval_samples} samples (T=1, top-p 0.95), the same "
        "items for every run; intervals are 95% t-intervals of the mean over seeds.", "",
        f"Runs finished: " + ", ".join(f"{a} {len(runs[a])}/{args.seeds}" for a in ALGORITHMS) + ".", "",
        "## Held-out accuracy (%) by step, mean +- 95% interval over seeds", "",
    ]
    done = {a: curves(s) for a, s in runs.items() if s}
    if not done:
        return "\n".join(lines + ["No run has finished yet."]) + "\n"
    steps = next(iter(done.values()))[0]
    lines += ["| algorithm | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for a, (_, acc) in done.items():
        cells = []
        for j in range(acc.shape[1]):
            m, h = interval(list(acc[:, j]))
            cells.append(f"{100 * m:.1f}" + ("" if math.isnan(h) else f" +- {100 * h:.1f}"))
        lines.append(f"| {a.upper()} | " + " | ".join(cells) + " |")
    common = sorted(set.intersection(*(set(runs[a]) for a in done)))
    if len(done) > 1 and len(common) > 1:
        lines += ["", f"Paired by seed (runs with one seed start from the same prompts and sampling seeds; "
                  f"{len(common)} seeds), accuracy difference at the last evaluation, mean +- 95% interval:", ""]
        finals = {a: {s: [r["eval/accuracy"] for r in runs[a][s] if "eval/accuracy" in r][-1] for s in common} for a in done}
        for x, y in (("cispo", "dapo"), ("cispo", "grpo"), ("dapo", "grpo")):
            if x in done and y in done:
                m, h = interval([finals[x][s] - finals[y][s] for s in common])
                lines.append(f"- {x.upper()} - {y.upper()}: {100 * m:+.1f} +- {100 * h:.1f} points")
    lines += ["", "Per seed, first -> last evaluation: " + "; ".join(
        f"{a.upper()} " + ", ".join(f"{100 * r[0]:.1f} -> {100 * r[-1]:.1f}" for r in acc) for a, (_, acc) in done.items()), ""]

    lines += ["## What the updates did (mean over steps and seeds)", "",
              "| algorithm | clipped tokens % | gradient-masked tokens % | mean IS weight | skipped updates % | "
              "rollout accuracy first 5 -> last 5 steps % | wall / CPU min per run |", "|---|---|---|---|---|---|---|"]
    for a, seeds in runs.items():
        if not seeds:
            continue
        rows = [r for rs in seeds.values() for r in rs if "accuracy/mean" in r]  # training steps
        first = [r["accuracy/mean"] for r in rows if r["step"] <= 5]
        last = [r["accuracy/mean"] for r in rows if r["step"] > args.steps - 5]
        timed = [walls[f"{a}-seed{s}"] for s in seeds if f"{a}-seed{s}" in walls]
        known = [[t[i] for t in timed if not math.isnan(t[i])] for i in (0, 1)]
        wall, cpu = (np.mean(k) / 60 if k else float("nan") for k in known)
        lines.append(f"| {a.upper()} | {100 * per_update(rows, 'train/clip_fraction'):.2f} | "
                     f"{100 * per_update(rows, 'train/masked_fraction'):.2f} | {per_update(rows, 'train/is_weight_mean'):.4f} | "
                     f"{100 * per_update(rows, 'train/skipped'):.1f} | {100 * np.mean(first):.1f} -> {100 * np.mean(last):.1f} | "
                     f"{wall:.1f} / {cpu:.1f} |")
    lines += ["", "Clipped: IS weight outside that algorithm's own range ([0, 1.28] CISPO, [0.8, 1.28] DAPO, "
              "[0.8, 1.2] GRPO). Gradient-masked: tokens whose gradient the objective drops (PPO's min for "
              "DAPO/GRPO; none for CISPO, which keeps every token's gradient with a clipped weight). Skipped: "
              "minibatches whose advantages were all zero (GRPO has no dynamic sampling).", ""]

    if "dapo" in done:
        start, final = float(done["dapo"][1].mean(0)[0]), float(done["dapo"][1].mean(0)[-1])
        targets = {"half of DAPO's gain": start + (final - start) / 2, "DAPO's final accuracy": final}
        lines += ["## Steps to reach DAPO's accuracy", "",
                  f"On each algorithm's mean curve over seeds, linear between evaluations; DAPO goes from "
                  f"{100 * start:.1f}% to {100 * final:.1f}%. The ratio is the algorithm's steps over DAPO's.", "",
                  "| algorithm | " + " | ".join(f"{k} ({100 * v:.1f}%): step, ratio" for k, v in targets.items()) + " |",
                  "|---|" + "---|" * len(targets)]
        dapo_at = {k: first_step_reaching(done["dapo"][0], list(done["dapo"][1].mean(0)), v) for k, v in targets.items()}
        for a, (st, acc) in done.items():
            cells = []
            for k, v in targets.items():
                at = first_step_reaching(st, list(acc.mean(0)), v)
                ratio = f"{at / dapo_at[k]:.2f}" if at is not None and dapo_at[k] else "-"
                cells.append("not reached" if at is None else f"{at:.1f}, {ratio}")
            lines.append(f"| {a.upper()} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--policy", type=Path, default=Path("runs/sft/policy"), help="the SFT policy every run starts from")
    ap.add_argument("--work", type=Path, default=Path("runs/figure2"), help="run directories")
    ap.add_argument("--data", type=Path, help="RL data folder (mix.parquet + heldout.jsonl); default: WORK/data, "
                                              "2-digit arithmetic generated once")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20, help="generation batches per run")
    ap.add_argument("--updates", type=int, default=16, help="off-policy updates (minibatches) per batch")
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--eval-prompts", type=int, default=128)
    ap.add_argument("--eval-samples", type=int, default=2)
    ap.add_argument("--output", type=Path, default=Path("bench/results/figure2.md"))
    ap.add_argument("--figure", type=Path, default=Path("docs/figures/figure2.png"))
    ap.add_argument("--report-only", action="store_true", help="rewrite the table and plot from finished runs")
    args = ap.parse_args(argv)
    if not args.report_only and not (args.policy / "config.json").exists():
        sys.exit(f"error: {args.policy}: no policy there (run the sft stage first, or pass --policy)")
    if args.data is None:
        args.data = args.work / "data"
        if not args.report_only and not (args.data / "mix.parquet").exists():
            from tasks.curate.rl_data import write_generated

            write_generated(args.data, {"arithmetic": 2}, items=2000, heldout_items=args.eval_prompts)

    walls_file = args.work / "walls.tsv"
    walls = {}  # run -> (wall s, CPU s) of its last (possibly resumed) process; nan where not recorded
    for line in walls_file.read_text().splitlines() if walls_file.exists() else []:
        key, *vals = line.split("\t")
        walls[key] = (float(vals[0]), float(vals[1]) if len(vals) > 1 else float("nan"))
    title = (f"Tiny preset, {args.updates} off-policy updates per batch, from {args.policy}; "
             f"held-out: {args.eval_prompts} arithmetic items x {args.eval_samples} samples")
    todo = [] if args.report_only else [(a, s) for s in range(args.seeds) for a in ALGORITHMS]
    for a, s in todo:
        if finished(run_dir(args.work, a, s), args.steps):
            continue
        walls[f"{a}-seed{s}"] = train(args, a, s)
        args.work.mkdir(parents=True, exist_ok=True)
        walls_file.write_text("".join(f"{k}\t{w:.1f}\t{c:.1f}\n" for k, (w, c) in walls.items()))
        runs = collect(args.work, args.steps, args.seeds)
        args.output.write_text(report(args, runs, walls))
        plot(runs, args.figure, title)
    runs = collect(args.work, args.steps, args.seeds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(args, runs, walls))
    if any(runs.values()):
        plot(runs, args.figure, title)
    print(args.output.read_text())


if __name__ == "__main__":
    main()
