"""Measuring a judge as the report does (section 4.2): accuracy on a held-out labelled benchmark in
both modes, position-swap agreement, best-of-N chosen by the judge against pass@N and random choice,
the longer-wins rate on equal-quality pairs of different length, and the quality of the references
the Swiss round picks. ``write_report`` writes ``report.json``, ``report.md`` and ``judge.png``.

Uncounted verdicts are never scored as anything: a malformed grade is a wrong grade and never wins
a best-of-N choice (unless every sample's is malformed: then the first is taken, as random choice
would); an inconsistent or malformed pair is a wrong pairwise answer and a tie for longer-wins.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tasks.envs.genrm.data import Example
from tasks.envs.genrm.verdict import GRADE_VALUES, PAIR_VALUES


def _by_kind(examples: list[Example], hits: list[bool]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for e, h in zip(examples, hits):
        groups[e.kind].append(h)
    return {k: {"n": len(v), "accuracy": float(np.mean(v))} for k, v in sorted(groups.items())}


def grade_accuracy(judge, examples: list[Example]) -> dict[str, Any]:
    """Grade mode: exact-grade accuracy, accuracy of the correct/incorrect split (grade >= 4), the
    confusion matrix (rows: label 1-5; columns: verdict 1-5, then malformed) and accuracy per kind."""
    verdicts = judge.grade([e.question for e in examples], [e.second for e in examples], [e.first for e in examples])
    hits = [v.value == e.label for e, v in zip(examples, verdicts)]
    correct = [v.ok and (v.value >= 4) == (e.label >= 4) for e, v in zip(examples, verdicts)]
    confusion = [[0] * (len(GRADE_VALUES) + 1) for _ in GRADE_VALUES]
    for e, v in zip(examples, verdicts):
        confusion[e.label - 1][v.value - 1 if v.ok else len(GRADE_VALUES)] += 1
    return {"n": len(examples), "accuracy": float(np.mean(hits)), "correctness_accuracy": float(np.mean(correct)),
            "malformed": sum(not v.ok for v in verdicts), "confusion": confusion, "by_kind": _by_kind(examples, hits)}


def pair_accuracy(judge, examples: list[Example]) -> dict[str, Any]:
    """Pairwise mode, each pair judged in both positions: accuracy (a counted verdict equal to the
    label; uncounted ones are wrong), swap agreement, accuracy among the agreeing, per kind."""
    results = judge.against([e.question for e in examples], [e.first for e in examples], [e.second for e in examples])
    hits = [r.value == e.label for e, r in zip(examples, results)]
    agree = [r.consistent for r in results]
    counted = [h for h, a in zip(hits, agree) if a]
    confusion = [[0] * (len(PAIR_VALUES) + 1) for _ in PAIR_VALUES]
    for e, r in zip(examples, results):
        confusion[e.label + 1][r.value + 1 if r.consistent else len(PAIR_VALUES)] += 1
    return {"n": len(examples), "accuracy": float(np.mean(hits)), "swap_agreement": float(np.mean(agree)),
            "accuracy_when_agreeing": float(np.mean(counted)) if counted else 0.0,
            "malformed": sum(r.malformed for r in results), "confusion": confusion,
            "by_kind": _by_kind(examples, hits)}


def longer_wins(judge, examples: list[Example]) -> dict[str, Any]:
    """Equal-quality pairs (``first`` shorter): how often the longer answer wins, a tie or an
    uncounted verdict counting one half (0.5 = no length bias), also by length ratio."""
    results = judge.against([e.question for e in examples], [e.second for e in examples], [e.first for e in examples])
    wins = [(1 + (r.value or 0)) / 2 for r in results]
    ratio = [len(e.second) / max(len(e.first), 1) for e in examples]
    buckets = {"<1.5x": lambda x: x < 1.5, "1.5-2x": lambda x: 1.5 <= x < 2, ">=2x": lambda x: x >= 2}
    by_ratio = {}
    for name, inside in buckets.items():
        sel = [w for w, x in zip(wins, ratio) if inside(x)]
        if sel:
            by_ratio[name] = {"n": len(sel), "longer_wins": float(np.mean(sel))}
    return {"n": len(examples), "longer_wins": float(np.mean(wins)),
            "ties": float(np.mean([r.value == 0 for r in results])),
            "swap_agreement": float(np.mean([r.consistent for r in results])), "by_ratio": by_ratio}


def best_of_n(judge, policy, task, items: list[dict], n: int) -> dict[str, Any]:
    """The policy samples ``n`` replies per item; the judge grades each against the reference and
    best-of-k takes the highest grade among the first k (first on ties). Reported for k = 1, 2, 4, ...,
    n: best-of-k accuracy, pass@k (some sample correct) and random choice (the mean correctness)."""
    samples = policy.sample([it["question"] for it in items], n)
    correct = np.array([[task.verify(it, s) >= 1.0 for s in ss] for it, ss in zip(items, samples)])  # [I, n]
    flat = judge.grade([it["question"] for it in items for _ in range(n)],
                       [it["answer"] for it in items for _ in range(n)], [s for ss in samples for s in ss])
    grades = np.array([v.value if v.ok else 0 for v in flat]).reshape(len(items), n)  # 0: malformed, never chosen
    ks = sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})
    rows = []
    for k in ks:
        pick = grades[:, :k].argmax(axis=1)
        rows.append({"k": k, "best_of_k": float(correct[np.arange(len(items)), pick].mean()),
                     "pass_at_k": float(correct[:, :k].any(axis=1).mean()),
                     "random": float(correct[:, :k].mean())})
    judged_right = [(g >= 4) == c for g, c in zip(grades.ravel(), correct.ravel()) if g > 0]
    return {"items": len(items), "n": n, "curve": rows, "best_of_n": rows[-1]["best_of_k"],
            "pass_at_n": rows[-1]["pass_at_k"], "random": rows[-1]["random"],
            "judge_agrees_with_verifier": float(np.mean(judged_right)) if judged_right else 0.0,
            "malformed": int((grades == 0).sum())}


def reference_quality(items: list[dict], oracle: Callable[[dict, str], float]) -> dict[str, Any]:
    """How good the Swiss-round references are by the annotator's measure: the share of prompts whose
    reference has the best quality among its candidates, and mean quality of reference, best and a
    random candidate."""
    ref, best, mean = [], [], []
    for it in items:
        q = [oracle(it, c) for c in it["metadata"]["candidates"]]
        ref.append(oracle(it, it["answer"]))
        best.append(max(q))
        mean.append(float(np.mean(q)))
    return {"prompts": len(items), "reference_is_best": float(np.mean([r >= b for r, b in zip(ref, best)])),
            "reference_quality": float(np.mean(ref)), "best_quality": float(np.mean(best)),
            "random_quality": float(np.mean(mean))}


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table."""
    g, p, ln, bon = report["grade"], report["pairs"], report["length"], report["best_of_n"]
    lines = ["| measure | value | note |", "|---|---|---|",
             f"| grade-mode accuracy (5 grades) | {g['accuracy']:.3f} | {g['n']} held-out answers; chance 0.2 |",
             f"| grade-mode correct/incorrect accuracy | {g['correctness_accuracy']:.3f} | grade >= 4 vs <= 3 |",
             f"| pairwise accuracy | {p['accuracy']:.3f} | {p['n']} held-out pairs, both positions; uncounted = wrong |",
             f"| position-swap agreement | {p['swap_agreement']:.3f} | verdict(A,B) = -verdict(B,A) |",
             f"| pairwise accuracy when agreeing | {p['accuracy_when_agreeing']:.3f} | |",
             f"| longer-wins rate, equal quality | {ln['longer_wins']:.3f} | {ln['n']} pairs; 0.5 = unbiased; "
             f"ties {ln['ties']:.3f} |",
             f"| best-of-{bon['n']} (judge) | {bon['best_of_n']:.3f} | {bon['items']} held-out items |",
             f"| pass@{bon['n']} | {bon['pass_at_n']:.3f} | upper bound of any selector |",
             f"| random choice | {bon['random']:.3f} | = pass@1 |",
             f"| malformed verdicts | {report['judge']['judge/malformed']:.0f} of {report['judge']['judge/prompts']:.0f} "
             f"| counted, never scored |",
             f"| judge throughput | {report['judge']['judge/prompts_per_s']:.1f} prompts/s | |"]
    for name, r in report.get("references", {}).items():
        lines.append(f"| Swiss reference is the best candidate ({name}) | {r['reference_is_best']:.3f} | quality "
                     f"{r['reference_quality']:.2f} vs best {r['best_quality']:.2f}, random {r['random_quality']:.2f} |")
    lines += ["", "Accuracy by kind:", "", "| mode | kind | n | accuracy |", "|---|---|---|---|"]
    for mode in ("grade", "pairs"):
        for kind, r in report[mode]["by_kind"].items():
            lines.append(f"| {mode} | {kind} | {r['n']} | {r['accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Four panels: grade confusion, pairwise confusion, best-of-k vs pass@k vs random, longer-wins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(11, 8.5))
    for a, key, rows, cols, title in (
            (ax[0, 0], "grade", [str(g) for g in GRADE_VALUES], [str(g) for g in GRADE_VALUES] + ["bad"],
             "grade mode: label (rows) vs verdict"),
            (ax[0, 1], "pairs", ["-1", "0", "1"], ["-1", "0", "1", "uncounted"], "pairwise: label vs counted verdict")):
        m = np.array(report[key]["confusion"], float)
        a.imshow(m / np.maximum(m.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            a.text(j, i, int(v), ha="center", va="center", fontsize=8)
        a.set_xticks(range(len(cols)), cols)
        a.set_yticks(range(len(rows)), rows)
        a.set_title(f"{title}\naccuracy {report[key]['accuracy']:.3f}")
    curve = report["best_of_n"]["curve"]
    ks = [r["k"] for r in curve]
    for key, label in (("pass_at_k", "pass@k"), ("best_of_k", "best-of-k (judge)"), ("random", "random choice")):
        ax[1, 0].plot(ks, [r[key] for r in curve], marker="o", label=label)
    ax[1, 0].set_xscale("log", base=2)
    ax[1, 0].set_xlabel("k samples")
    ax[1, 0].set_ylabel("accuracy")
    ax[1, 0].set_title("best-of-k on held-out verifiable items")
    ax[1, 0].legend()
    by = report["length"]["by_ratio"]
    names = list(by) + ["all"]
    vals = [by[k]["longer_wins"] for k in by] + [report["length"]["longer_wins"]]
    ax[1, 1].bar(names, vals, color="tab:orange")
    ax[1, 1].axhline(0.5, color="k", ls="--", lw=1)
    ax[1, 1].set_ylim(0, 1)
    ax[1, 1].set_xlabel("longer / shorter length")
    ax[1, 1].set_title("longer-wins rate, equal quality (0.5 = unbiased)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out_dir: str | Path) -> None:
    out = Path(out_dir)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "judge.png")
