"""Held-out accuracy against RL step for several runs (the shape of the report's Figure 2).

    python -m tasks.train.rl.plot runs/rl/cispo runs/rl/grpo runs/rl/dapo --output docs/figures/rl_accuracy.png

Reads each run's ``metrics.jsonl`` (written whether or not MLflow is installed); the legend is the
run directory's name. ``--metric`` picks another series (default ``eval/accuracy``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tasks.train.tracking import read_metrics


def plot_runs(run_dirs: list[str | Path], out: str | Path, metric: str = "eval/accuracy") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in run_dirs:
        rows = [r for r in read_metrics(run) if metric in r]
        if not rows:
            raise ValueError(f"{run}/metrics.jsonl has no {metric!r} values")
        ax.plot([r["step"] for r in rows], [100 * r[metric] for r in rows], marker="o", ms=3, label=Path(run).name)
    ax.set_xlabel("RL step (generation batches)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title("Held-out accuracy vs RL step")
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories holding metrics.jsonl")
    ap.add_argument("--output", default="docs/figures/rl_accuracy.png")
    ap.add_argument("--metric", default="eval/accuracy")
    args = ap.parse_args(argv)
    print(plot_runs(args.runs, args.output, args.metric))


if __name__ == "__main__":
    main()
