"""python -m tasks.curate.calibrate --policy MODEL_DIR --output DIR [--params params.yaml] [--set KEY=VALUE]

Difficulty calibration of the SynLogic tasks (report section 4.1): for each task, the lower bound
is the lowest level where the base model's pass rate lies in (0, 0.5], the upper bound the highest
level where a stronger policy still has pass@k > 0. The base model is ``--policy`` (the SFT
policy, in the pipeline); the strong one is ``calibrate.strong_policy``, a longer-trained or larger
checkpoint when one exists, else the base policy itself given ``strong_samples`` tries per item
instead of ``base_samples`` (in one pipeline run nothing stronger exists before RL: the strength
is the larger k). Both bounds are written to ``DIR/bounds.json`` (``{task: {low, high}}``, the
shape of ``synlogic.difficulty``; the difficulty stage reads it and grades only SynLogic items
inside the bounds, which is all ``rl_data`` then sees) and the rates seen per level, with what
was calibrated against what, to ``DIR/report.json``.

``calibrate`` is a pure function of a ``pass_rate(task, difficulty, policy)`` callable, so any
policy (a model, a stub in tests, an API) can be plugged in; the command samples checkpoints
through ``tasks.train.policy.SamplingPolicy``.

Fallbacks, where no level meets a criterion: if the base model never scores in (0, 0.5], the
lower bound is the first level it fails outright (rate 0), else (it passes every level above 0.5)
the top level; if the strong policy solves nothing at any level, the upper bound equals the lower
bound. The upper bound is never below the lower bound.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, Callable, ClassVar, Generator, Sequence

from tasks.config import Params, exits_cleanly, load, param, stage_parser


@dataclass
class CalibrateParams(Params):
    """``calibrate``: the SynLogic difficulty bounds from a base and a strong policy."""

    SECTION: ClassVar[str] = "calibrate"
    tasks: tuple[str, ...] = param(("dyck_languages", "object_counting", "object_properties"),
                                   help="SynLogic families to calibrate (the RL mix's); empty = all of them")
    strong_policy: str = param("", help="policy directory of the strong policy; empty = the base policy with "
                                        "strong_samples tries per item")
    items: int = param(8, ge=1, help="items per (task, level)")
    base_samples: int = param(4, ge=1, help="samples per item for the base model's pass rate")
    strong_samples: int = param(16, ge=1, help="k of the strong policy's pass@k")
    max_base_rate: float = param(0.5, gt=0.0, le=1.0, help="lower bound: the lowest level with base pass rate in "
                                                           "(0, max_base_rate]")
    max_new_tokens: int = param(96, ge=1, help="reply budget of both policies (tiny default; at scale the RL window)")
    temperature: float = param(1.0, ge=0.0, help="sampling temperature")
    top_p: float = param(0.95, gt=0.0, le=1.0, help="nucleus sampling")
    batch_size: int = param(160, ge=1, help="sequences per generate call and worker")
    seed: int = param(0, help="items and sampling seed")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")
    threads: int = param(2, ge=1, help="CPU cores: torch threads and single-thread generation workers; a fixed number, "
                                       "so results do not depend on the machine's cores")


#: (task, difficulty, policy name) -> per-item share of sampled responses that earn reward 1.0
PassRate = Callable[[str, int, str], Sequence[float]]
#: a bound's scan: yields levels, is sent per-item shares, returns (level, mean per level seen)
Scan = Generator[int, Sequence[float], tuple[int, dict[int, float]]]


@dataclass
class Calibrated:
    """One task's bounds and the rates they were read from."""

    low: int
    high: int
    base_rate: dict[int, float] = field(default_factory=dict)  # mean pass rate per level evaluated
    strong_pass: dict[int, float] = field(default_factory=dict)  # pass@k per level evaluated


def lower_scan(levels: Sequence[int], max_base_rate: float) -> Scan:
    """The lower bound as a scan: yields each level to evaluate (lowest first), is sent the base
    model's per-item pass rates there, and returns ``(level, rates seen)``: the lowest level whose
    mean rate lies in (0, max_base_rate], stopping there; the fallbacks of the module docstring otherwise."""
    ordered = sorted(levels)
    if not ordered:
        raise ValueError("no difficulty levels to calibrate")
    seen: dict[int, float] = {}
    for lv in ordered:
        seen[lv] = float(mean((yield lv)))
        if 0.0 < seen[lv] <= max_base_rate:
            return lv, seen
    failed = [lv for lv in ordered if seen[lv] == 0.0]
    return (failed[0] if failed else ordered[-1]), seen


def upper_scan(levels: Sequence[int], low: int) -> Scan:
    """The upper bound as a scan (see ``lower_scan``): the highest level not below ``low`` where the
    strong policy's pass@k is above 0, scanning downwards and stopping there; ``low`` when there is
    none. Each per-item share is over k samples, so an item's pass@k is 1 when its share is above 0
    and the level's pass@k is the mean over items."""
    seen: dict[int, float] = {}
    for lv in sorted((lv for lv in levels if lv >= low), reverse=True):
        seen[lv] = float(mean(float(r > 0.0) for r in (yield lv)))
        if seen[lv] > 0.0:
            return lv, seen
    return low, seen


def run_scans(scans: dict[str, Scan], rates: Callable[[dict[str, int]], dict[str, Sequence[float]]]) -> dict[str, Any]:
    """Drive several scans in lockstep: each round evaluates every unfinished scan's next level in
    one call of ``rates({task: level}) -> {task: per-item shares}`` (one batch for the policy)."""
    results: dict[str, Any] = {}
    pending = {}
    for task, scan in scans.items():
        try:
            pending[task] = next(scan)
        except StopIteration as done:
            results[task] = done.value
    while pending:
        seen = rates(dict(pending))
        for task in list(pending):
            try:
                pending[task] = scans[task].send(seen[task])
            except StopIteration as done:
                results[task] = done.value
                del pending[task]
    return results


def lower_bound(rate: Callable[[int], Sequence[float]], levels: Sequence[int],
                max_base_rate: float) -> tuple[int, dict[int, float]]:
    """``lower_scan`` with one rate function."""
    return run_scans({"t": lower_scan(levels, max_base_rate)}, lambda want: {"t": rate(want["t"])})["t"]


def upper_bound(rate: Callable[[int], Sequence[float]], levels: Sequence[int],
                low: int) -> tuple[int, dict[int, float]]:
    """``upper_scan`` with one rate function."""
    return run_scans({"t": upper_scan(levels, low)}, lambda want: {"t": rate(want["t"])})["t"]


def calibrate(pass_rate: PassRate, levels: dict[str, Sequence[int]], max_base_rate: float) -> dict[str, Calibrated]:
    """Each task's ``[low, high]`` from the pass rates of the policies named ``base`` and ``strong``."""
    out = {}
    for task, task_levels in levels.items():
        low, base_rate = lower_bound(lambda lv: pass_rate(task, lv, "base"), task_levels, max_base_rate)
        high, strong_pass = upper_bound(lambda lv: pass_rate(task, lv, "strong"), task_levels, low)
        out[task] = Calibrated(low=low, high=high, base_rate=base_rate, strong_pass=strong_pass)
    return out


def policy_pass_rates(policy, samples: int, *, items: int, seed: int) -> Callable[[dict[str, int]], dict[str, list[float]]]:
    """``{task: level} -> {task: per-item shares}``: ``items`` items of each SynLogic task at its
    level, all sampled ``samples`` times by ``policy`` (``sample(questions, k)``) in one call."""
    from tasks.curate.difficulty import pass_rates
    from tasks.envs.synlogic import TASKS

    def rates(want: dict[str, int]) -> dict[str, list[float]]:
        batches = {task: TASKS[task].generate(items, seed, lv) for task, lv in want.items()}
        flat = [(task, {**it, "task": task}) for task, its in batches.items() for it in its]
        shares = pass_rates([it for _, it in flat], policy, samples, lambda it, r: TASKS[it["task"]].verify(it, r), 1.0)
        out: dict[str, list[float]] = {task: [] for task in want}
        for (task, _), share in zip(flat, shares):
            out[task].append(float(share))
        return out

    return rates


PARAMS = {"calibrate": CalibrateParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> dict[str, Calibrated]:
    from tqdm import tqdm

    from model.sharded import set_cores
    from tasks.envs.synlogic import TASKS
    from tasks.envs.synlogic.base import SynLogicTask
    from tasks.train.policy import SamplingPolicy

    ap = stage_parser(__doc__, {"policy": "policy directory of the base model (the SFT policy)"},
                      prog="python -m tasks.curate.calibrate")
    args = ap.parse_args(argv)
    p = load(args.params, PARAMS, args.set)["calibrate"]
    set_cores(p.threads)
    synlogic = sorted(n for n, t in TASKS.items() if isinstance(t, SynLogicTask))
    names = list(p.tasks) or synlogic
    unknown = [t for t in names if t not in synlogic]
    if unknown:
        raise p.fail("tasks", unknown, f"SynLogic task names: {', '.join(synlogic)}")
    strong_dir = p.strong_policy or args.policy
    if not (Path(strong_dir) / "config.json").exists():
        raise p.fail("strong_policy", p.strong_policy, "a policy directory (config.json inside) or '' for the base policy")

    def load_policy(path: str) -> SamplingPolicy:
        return SamplingPolicy.load(path, max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                                   batch_size=p.batch_size, seed=p.seed, device=p.device)

    def levels(task: str) -> range:
        lo, hi = TASKS[task].difficulty_range
        return range(lo, hi + 1)

    # one checkpoint in memory at a time: every lower bound first, then every upper bound; each round
    # samples the next level of every task still scanning in one batch
    base = load_policy(args.policy)
    rates = policy_pass_rates(base, p.base_samples, items=p.items, seed=p.seed)
    with tqdm(desc="calibrate base", unit="round") as bar:
        lows = run_scans({task: lower_scan(levels(task), p.max_base_rate) for task in names},
                         lambda want: (bar.update(1), rates(want))[1])
    strong = base if strong_dir == args.policy else load_policy(strong_dir)
    rates = policy_pass_rates(strong, p.strong_samples, items=p.items, seed=p.seed)
    with tqdm(desc="calibrate strong", unit="round") as bar:
        highs = run_scans({task: upper_scan(levels(task), lows[task][0]) for task in names},
                          lambda want: (bar.update(1), rates(want))[1])
    results = {task: Calibrated(low=lows[task][0], high=highs[task][0], base_rate=lows[task][1],
                                strong_pass=highs[task][1]) for task in names}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bounds.json").write_text(json.dumps({t: {"low": b.low, "high": b.high} for t, b in sorted(results.items())},
                                                indent=1) + "\n")
    report = {"base_policy": args.policy, "strong_policy": strong_dir, "base_samples": p.base_samples,
              "strong_samples": p.strong_samples, "items_per_level": p.items,
              "tasks": {t: vars(b) for t, b in sorted(results.items())}}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    for task, b in results.items():
        print(f"{task:24s} low {b.low}  high {b.high}  base {b.base_rate}  strong pass@k {b.strong_pass}")
    return results


if __name__ == "__main__":
    main()
