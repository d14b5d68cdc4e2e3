"""python -m tasks.train.evaluate --heldout PATH --policy DIR [--policy DIR ...] --output DIR [--params params.yaml] [--set KEY=VALUE]

Held-out accuracy per task family for a list of policies (report section 4: temperature 1.0, top-p
0.95, the average pass rate over k samples per item). ``--heldout`` is the ``rl_data`` stage's
heldout.jsonl (each item with its ``family``); each ``--policy`` is a policy directory, named in
the table by its parent folder (``runs/rl/policy`` -> ``rl``), the first one the baseline the
others are compared with. Later policies (length extension, ...) add a ``--policy`` and get a row.

Writes into ``DIR``:

- ``report.json``: per policy and family the accuracy (mean over items of the share of k samples
  verified correct), its 95% interval, items and samples; ``mix``: the same over every held-out
  item; per later policy the paired difference with the baseline (same items, so the interval
  is that of the mean per-item difference) and whether it excludes 0;
- ``table.md`` (printed at the end) and ``accuracy.png`` (bars with the intervals);
- ``scores/<policy>/<family>.json``: per-item passes, with a fingerprint of the policy's files, the
  items and the sampling settings. A rerun reuses every part whose fingerprint still matches, so a
  killed evaluation resumes at the family it was in and a repeated one costs nothing.

Intervals: the k samples of an item are not independent, so an accuracy's interval is
``mean +- 1.96 * sd / sqrt(n)`` over the n per-item pass rates (the normal approximation with the
item as the unit), and a difference's interval the same over per-item differences.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tasks.config import Params, UsageError, exits_cleanly, load, param, stage_parser
from tasks.envs.params import EnvParams

Z95 = 1.959964


@dataclass
class EvalParams(Params):
    """``eval``: held-out accuracy per task family of each policy (report section 4's settings)."""

    SECTION: ClassVar[str] = "eval"
    k: int = param(4, ge=1, help="samples per item; accuracy = the mean pass rate over them")
    temperature: float = param(1.0, gt=0.0, help="sampling temperature (the report's: 1.0)")
    top_p: float = param(0.95, gt=0.0, le=1.0, help="nucleus sampling (the report's: 0.95)")
    max_new_tokens: int = param(96, ge=1, help="reply budget (tiny default: the worked solutions of the levels SFT "
                                               "teaches are under 90 tokens)")
    families: tuple[str, ...] = param((), help="families to evaluate; empty = every family of --heldout")
    batch_size: int = param(160, ge=1, help="sequences per generate call and worker")
    seed: int = param(0, help="sampling seed (the same for every policy and family)")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")
    threads: int = param(2, ge=1, help="CPU cores: torch threads and single-thread generation workers; a fixed number, "
                                       "so results do not depend on the machine's cores")
    experiment: str = param("m1-eval", help="MLflow experiment")


def interval(values: list[float], clip: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-item values and its normal 95% interval, cut to ``clip``
    (an accuracy's to [0, 1])."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    half = Z95 * x.std(ddof=1) / math.sqrt(x.size) if x.size > 1 else float("nan")
    return float(x.mean()), float(max(clip[0], x.mean() - half)), float(min(clip[1], x.mean() + half))


def policy_name(path: str | Path) -> str:
    """``runs/rl/policy`` -> ``rl``; a directory not named ``policy`` names itself."""
    path = Path(path).resolve()
    return path.parent.name if path.name == "policy" else path.name


def read_heldout(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Held-out items by family, in file order."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file; the held-out sets come from `python -m tasks.curate.rl_data`")
    out: dict[str, list[dict[str, Any]]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        missing = [k for k in ("family", "task", "id", "question", "answer") if k not in item]
        if missing:
            raise UsageError(f"{path}:{n}: missing {missing}")
        out.setdefault(item["family"], []).append(item)
    return out


def score_family(policy, scorer, items: list[dict[str, Any]], k: int) -> list[int]:
    """Passes out of k per item (a sample passes when its reward reaches 1)."""
    replies = policy.sample([it["question"] for it in items], k)
    eos = policy.tok.eos_token
    rewards = scorer.score_many([(it, r.removesuffix(eos)) for it, rs in zip(items, replies) for r in rs])
    return [sum(r >= 1.0 for r in rewards[i * k : (i + 1) * k]) for i in range(len(items))]


def _fingerprint(policy_digest: str, items: list[dict[str, Any]], params: EvalParams) -> str:
    import hashlib

    h = hashlib.sha256(policy_digest.encode())
    h.update(json.dumps(items, sort_keys=True).encode())
    h.update(json.dumps({k: v for k, v in params.to_dict().items() if k not in ("families", "experiment", "device")},
                        sort_keys=True).encode())
    return h.hexdigest()


def evaluate_policies(heldout: dict[str, list[dict[str, Any]]], policies: list[str | Path], out_dir: str | Path,
                      params: EvalParams, envs: EnvParams) -> dict[str, Any]:
    """Score every policy on every family (reusing finished parts) and write the report, table and plot."""
    import torch
    from tqdm import tqdm

    from tasks.envs.scoring import Scorer
    from tasks.train.checkpoint import tree_digest
    from tasks.train.policy import SamplingPolicy

    out = Path(out_dir)
    names = [policy_name(p) for p in policies]
    if len(set(names)) != len(names):
        raise UsageError(f"--policy: two policies share a name ({names}); each is named by its folder")
    families = list(params.families) or sorted(heldout)
    unknown = [f for f in families if f not in heldout]
    if unknown:
        raise params.fail("families", unknown, f"families of the held-out file: {', '.join(sorted(heldout))}")
    scorer = Scorer(envs, workers=params.threads)
    passes: dict[str, dict[str, list[int]]] = {}
    reused = 0
    for name, path in zip(names, policies):
        digest = tree_digest(path)
        passes[name] = {}
        policy = None
        for fam in tqdm(families, desc=f"eval {name}"):
            items = heldout[fam]
            fp = _fingerprint(digest, items, params)
            cached = out / "scores" / name / f"{fam}.json"
            if cached.exists() and json.loads(cached.read_text()).get("fingerprint") == fp:
                passes[name][fam] = json.loads(cached.read_text())["passes"]
                reused += 1
                continue
            if policy is None:
                policy = SamplingPolicy.load(path, max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                                             top_p=params.top_p, batch_size=params.batch_size, seed=params.seed,
                                             device=params.device)
            policy.generator.manual_seed(params.seed)  # each (policy, family) samples from the same seed
            with torch.no_grad():
                passes[name][fam] = score_family(policy, scorer, items, params.k)
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            tmp.write_text(json.dumps({"fingerprint": fp, "ids": [it["id"] for it in items],
                                       "passes": passes[name][fam], "k": params.k}) + "\n")
            os.replace(tmp, cached)
    report = summarize(passes, families, names, params.k)
    report["policies"] = {n: str(p) for n, p in zip(names, policies)}
    report["settings"] = {"k": params.k, "temperature": params.temperature, "top_p": params.top_p,
                          "max_new_tokens": params.max_new_tokens}
    report["reused_parts"] = reused  # (policy, family) parts a previous attempt had finished
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "table.md").write_text(table(report) + "\n")
    plot(report, out / "accuracy.png")
    return report


def summarize(passes: dict[str, dict[str, list[int]]], families: list[str], names: list[str], k: int) -> dict[str, Any]:
    """Accuracy with intervals per policy and family (and the mix of all items); paired differences
    of every later policy with the first."""
    rows = {}
    for fam in [*families, "mix"]:
        rates = {n: [p / k for p in (sum((passes[n][f] for f in families), []) if fam == "mix" else passes[n][fam])]
                 for n in names}
        row: dict[str, Any] = {}
        for n in names:
            acc, lo, hi = interval(rates[n], clip=(0.0, 1.0))
            row[n] = {"accuracy": acc, "low": lo, "high": hi, "items": len(rates[n]), "samples": len(rates[n]) * k}
        for n in names[1:]:
            diff, lo, hi = interval([a - b for a, b in zip(rates[n], rates[names[0]])])
            row[f"{n}-{names[0]}"] = {"difference": diff, "low": lo, "high": hi, "beyond_interval": bool(lo > 0 or hi < 0)}
        rows[fam] = row
    return {"baseline": names[0], "families": families, "rows": rows, "k": k}


def accuracy_cell(r: dict[str, Any]) -> str:
    """An accuracy and its interval, in percent: ``46.1 [38.1, 54.1]``."""
    return f"{100 * r['accuracy']:.1f} [{100 * r['low']:.1f}, {100 * r['high']:.1f}]"


def difference_cell(r: dict[str, Any]) -> str:
    """A paired difference and its interval, in points, starred when the interval excludes 0."""
    return f"{100 * r['difference']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]" + (" *" if r["beyond_interval"] else "")


def table(report: dict[str, Any]) -> str:
    """The report as a markdown table: accuracy % [95% interval] per policy, then each difference."""
    names = list(report["policies"]) if "policies" in report else [report["baseline"]]
    base = report["baseline"]
    diffs = [f"{n}-{base}" for n in names[1:]]
    head = ["family", "items"] + [f"{n} % [95%]" for n in names] + [f"{d.replace('-', ' - ')} (pts) [95%]" for d in diffs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fam, row in report["rows"].items():
        cells = [f"**{fam}**" if fam == "mix" else fam, str(row[base]["items"])]
        cells += [accuracy_cell(row[n]) for n in names] + [difference_cell(row[d]) for d in diffs]
        lines.append("| " + " | ".join(cells) + " |")
    s = report["settings"] if "settings" in report else {"k": report["k"]}
    lines.append("")
    lines.append(f"k = {s['k']} samples per item" + (f" at temperature {s['temperature']}, top-p {s['top_p']}"
                                                     if "temperature" in s else "")
                 + "; intervals over items (normal, 95%); * = the difference's interval excludes 0.")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str | Path) -> None:
    """Grouped bars: accuracy per family and policy, with the 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["policies"])
    fams = list(report["rows"])
    width = 0.8 / len(names)
    x = np.arange(len(fams))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(fams) + 2), 3.8))
    for i, n in enumerate(names):
        acc = np.array([report["rows"][f][n]["accuracy"] for f in fams])
        err = np.array([[acc[j] - report["rows"][f][n]["low"], report["rows"][f][n]["high"] - acc[j]]
                        for j, f in enumerate(fams)]).T
        ax.bar(x + (i - (len(names) - 1) / 2) * width, 100 * acc, width, yerr=100 * np.nan_to_num(err), capsize=2, label=n)
    ax.set_xticks(x, fams, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(bottom=0)
    s = report["settings"]
    ax.set_title(f"held-out accuracy, k={s['k']} at T={s['temperature']}, top-p {s['top_p']} (95% intervals)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_to_mlflow(report: dict[str, Any], out_dir: Path, params: EvalParams) -> None:
    """Every accuracy and difference as a metric of the stage's MLflow run."""
    from tasks.train.tracking import RunTracker

    metrics = {}
    for fam, row in report["rows"].items():
        for n, r in row.items():
            key = "difference" if "difference" in r else "accuracy"
            metrics.update({f"{n}/{fam}/{key}": r[key], f"{n}/{fam}/low": r["low"], f"{n}/{fam}/high": r["high"]})
    tracker = RunTracker(out_dir, experiment=params.experiment, run_name="eval", params=params.to_dict())
    tracker.log(0, metrics)
    tracker.close()


PARAMS = {"eval": EvalParams, "envs": EnvParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> dict[str, Any]:
    from model.sharded import set_cores

    ap = stage_parser(__doc__, {"heldout": "held-out items (heldout.jsonl of tasks.curate.rl_data)"},
                      prog="python -m tasks.train.evaluate")
    ap.add_argument("--policy", action="append", required=True,
                    help="a policy directory (repeatable; the first is the baseline)")
    args = ap.parse_args(argv)
    loaded = load(args.params, PARAMS, args.set)
    set_cores(loaded["eval"].threads)
    for path in args.policy:
        if not (Path(path) / "config.json").exists():
            raise UsageError(f"--policy {path}: not a policy directory (no config.json)")
    out = Path(args.output)
    report = evaluate_policies(read_heldout(args.heldout), args.policy, out, loaded["eval"], loaded["envs"])
    log_to_mlflow(report, out, loaded["eval"])
    print(f"{report['reused_parts']} of {len(args.policy) * len(report['families'])} (policy, family) parts reused")
    print(table(report))
    return report


if __name__ == "__main__":
    main()
