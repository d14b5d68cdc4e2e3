"""Figure 4 of the report for a length-extension run: accuracy and mean reply length against step,
one panel per task, the windows shaded and each promotion marked.

    python -m tasks.train.extend.figure runs/extend --output docs/figures/figure4.png

Reads the stage's ``metrics.jsonl`` (every step of every window, in order) and ``report.json`` (the
windows and the promotions). Accuracy is the held-out one (``eval/accuracy/<task>``, at each
window's start, every ``extend.eval_every`` steps, at each promotion and at the end) where there is
one, drawn over the training rollouts' accuracy (``accuracy/<task>``, thin); length is the mean
reply length of the step's rollouts (``length/<task>``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tasks.train.tracking import read_metrics


def figure4(rows: list[dict[str, float]], windows: list[dict[str, Any]], tasks: list[str], path: str | Path,
            title: str = "") -> Path:
    """``rows``: per-step metrics; ``windows``: ``{index, tokens, start, end}`` in order (a promotion
    at each later window's start); one panel per task of ``tasks``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        train = [r for r in rows if f"accuracy/{task}" in r]
        held = [r for r in rows if f"eval/accuracy/{task}" in r]
        ax.plot([r["step"] for r in train], [100 * r[f"accuracy/{task}"] for r in train], color="tab:blue",
                lw=0.8, alpha=0.45, label="accuracy, training rollouts")
        if held:
            ax.plot([r["step"] for r in held], [100 * r[f"eval/accuracy/{task}"] for r in held], color="tab:blue",
                    marker="o", ms=4, lw=1.6, label="accuracy, held-out")
        ax.set_xlabel("training step")
        ax.set_ylabel("accuracy (%)", color="tab:blue")
        ax.set_ylim(0, 100)
        twin = ax.twinx()
        lengths = [r for r in rows if f"length/{task}" in r]
        twin.plot([r["step"] for r in lengths], [r[f"length/{task}"] for r in lengths], color="tab:orange",
                  lw=1.4, label="mean reply length")
        twin.set_ylabel("reply length (tokens)", color="tab:orange")
        top = max([w["tokens"] for w in windows] + [r[f"length/{task}"] for r in lengths]) * 1.15
        twin.set_ylim(0, top)
        for i, w in enumerate(windows):
            ax.axvspan(w["start"], w["end"], color="0.5", alpha=0.08 if i % 2 else 0.0, lw=0)
            twin.hlines(w["tokens"], w["start"], w["end"], color="tab:orange", ls=":", lw=1)
            twin.text((w["start"] + w["end"]) / 2, w["tokens"], f"{w['tokens']}", color="tab:orange",
                      ha="center", va="bottom", fontsize=7)
            if i:
                ax.axvline(w["start"], color="tab:red", ls="--", lw=1)
        ax.set_title(task, fontsize=10)
        if task == tasks[0]:
            handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            handles += [plt.Line2D([], [], color="tab:orange", ls=":", lw=1), plt.Line2D([], [], color="tab:red", ls="--", lw=1)]
    labels = [h.get_label() for h in handles[:-2]] + ["window (tokens)", "promotion"]
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(title or "Accuracy and reply length versus training step across output windows", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tasks.train.extend.figure", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="the extend stage's output folder (metrics.jsonl, report.json)")
    ap.add_argument("--output", required=True, help="the figure file")
    args = ap.parse_args(argv)
    report = json.loads((Path(args.run) / "report.json").read_text())
    print(figure4(read_metrics(args.run), report["windows"], report["tasks"], args.output))


if __name__ == "__main__":
    main()
