"""python -m tasks.curate.calibrate --base MODEL_DIR --strong MODEL_DIR --output DIR [--params params.yaml]

Difficulty calibration of the SynLogic tasks (report section 4.1): for each task, the lower bound
is the lowest level where the base model's pass rate lies in (0, 0.5], the upper bound the highest
level where a stronger policy (a longer-trained or larger checkpoint) still has pass@k > 0. Both
are written to ``DIR/bounds.json`` (``{task: {low, high}}``, the shape of ``synlogic.difficulty``)
and the rates seen per level to ``DIR/report.json``.

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
from typing import Callable, ClassVar, Sequence

from tasks.config import Params, exits_cleanly, load, param, stage_parser


@dataclass
class CalibrateParams(Params):
    """``calibrate``: the SynLogic difficulty bounds from a base and a strong policy."""

    SECTION: ClassVar[str] = "calibrate"
    tasks: tuple[str, ...] = param((), help="SynLogic families to calibrate; empty = all of them")
    items: int = param(16, ge=1, help="items per (task, level)")
    base_samples: int = param(4, ge=1, help="samples per item for the base model's pass rate")
    strong_samples: int = param(10, ge=1, help="k of the strong policy's pass@k")
    max_base_rate: float = param(0.5, gt=0.0, le=1.0, help="lower bound: the lowest level with base pass rate in "
                                                           "(0, max_base_rate]")
    max_new_tokens: int = param(1024, ge=1, help="reply budget of both policies")
    temperature: float = param(1.0, ge=0.0, help="sampling temperature")
    top_p: float = param(0.95, gt=0.0, le=1.0, help="nucleus sampling")
    batch_size: int = param(32, ge=1, help="sequences per generate call")
    seed: int = param(0, help="items and sampling seed")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")


#: (task, difficulty, policy name) -> per-item share of sampled responses that earn reward 1.0
PassRate = Callable[[str, int, str], Sequence[float]]


@dataclass
class Calibrated:
    """One task's bounds and the rates they were read from."""

    low: int
    high: int
    base_rate: dict[int, float] = field(default_factory=dict)  # mean pass rate per level evaluated
    strong_pass: dict[int, float] = field(default_factory=dict)  # pass@k per level evaluated


def lower_bound(rate: Callable[[int], Sequence[float]], levels: Sequence[int],
                max_base_rate: float) -> tuple[int, dict[int, float]]:
    """The lowest level whose mean base pass rate lies in (0, max_base_rate], scanning upwards and
    stopping there; the fallbacks of the module docstring otherwise. Also the rates seen."""
    ordered = sorted(levels)
    if not ordered:
        raise ValueError("no difficulty levels to calibrate")
    seen: dict[int, float] = {}
    for lv in ordered:
        seen[lv] = mean(rate(lv))
        if 0.0 < seen[lv] <= max_base_rate:
            return lv, seen
    failed = [lv for lv in ordered if seen[lv] == 0.0]
    return (failed[0] if failed else ordered[-1]), seen


def upper_bound(rate: Callable[[int], Sequence[float]], levels: Sequence[int],
                low: int) -> tuple[int, dict[int, float]]:
    """The highest level (not below ``low``) where the strong policy's pass@k is above 0, scanning
    downwards and stopping there; ``low`` when there is none. Also the pass@k seen per level.

    Each per-item share is over k samples, so an item's pass@k is 1 when its share is above 0
    and the level's pass@k is the mean over items."""
    seen: dict[int, float] = {}
    for lv in sorted((lv for lv in levels if lv >= low), reverse=True):
        seen[lv] = mean(float(r > 0.0) for r in rate(lv))
        if seen[lv] > 0.0:
            return lv, seen
    return low, seen


def calibrate(pass_rate: PassRate, levels: dict[str, Sequence[int]], max_base_rate: float) -> dict[str, Calibrated]:
    """Each task's ``[low, high]`` from the pass rates of the policies named ``base`` and ``strong``."""
    out = {}
    for task, task_levels in levels.items():
        low, base_rate = lower_bound(lambda lv: pass_rate(task, lv, "base"), task_levels, max_base_rate)
        high, strong_pass = upper_bound(lambda lv: pass_rate(task, lv, "strong"), task_levels, low)
        out[task] = Calibrated(low=low, high=high, base_rate=base_rate, strong_pass=strong_pass)
    return out


def policy_pass_rate(policy, samples: int, *, items: int, seed: int) -> Callable[[str, int], list[float]]:
    """``(task, level) -> per-item share``: generates ``items`` items of the SynLogic task at the
    level and samples ``policy`` (``sample(questions, k)``) ``samples`` times on each."""
    from tasks.curate.difficulty import pass_rates
    from tasks.envs.synlogic import TASKS

    def pass_rate(task: str, difficulty: int) -> list[float]:
        batch = TASKS[task].generate(items, seed, difficulty)
        return list(pass_rates(batch, policy, samples, lambda it, r: TASKS[task].verify(it, r), 1.0))

    return pass_rate


PARAMS = {"calibrate": CalibrateParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> dict[str, Calibrated]:
    from tqdm import tqdm

    from tasks.envs.synlogic import TASKS
    from tasks.envs.synlogic.base import SynLogicTask
    from tasks.train.policy import SamplingPolicy

    ap = stage_parser(__doc__, {"base": "policy directory of the base model",
                                "strong": "policy directory of the strong policy"}, prog="python -m tasks.curate.calibrate")
    args = ap.parse_args(argv)
    p = load(args.params, PARAMS, args.set)["calibrate"]
    synlogic = sorted(n for n, t in TASKS.items() if isinstance(t, SynLogicTask))
    names = list(p.tasks) or synlogic
    unknown = [t for t in names if t not in synlogic]
    if unknown:
        raise p.fail("tasks", unknown, f"SynLogic task names: {', '.join(synlogic)}")

    def load_policy(path: str) -> SamplingPolicy:
        return SamplingPolicy.load(path, max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                                   batch_size=p.batch_size, seed=p.seed, device=p.device)

    # one checkpoint in memory at a time: every lower bound first, then every upper bound
    rate = policy_pass_rate(load_policy(args.base), p.base_samples, items=p.items, seed=p.seed)
    lows = {task: lower_bound(lambda lv: rate(task, lv), range(TASKS[task].difficulty_range[0],
                                                               TASKS[task].difficulty_range[1] + 1), p.max_base_rate)
            for task in tqdm(names, desc="calibrate base")}
    rate = policy_pass_rate(load_policy(args.strong), p.strong_samples, items=p.items, seed=p.seed)
    results = {}
    for task in tqdm(names, desc="calibrate strong"):
        lo, hi = TASKS[task].difficulty_range
        low, base_rate = lows[task]
        high, strong_pass = upper_bound(lambda lv: rate(task, lv), range(lo, hi + 1), low)
        results[task] = Calibrated(low=low, high=high, base_rate=base_rate, strong_pass=strong_pass)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bounds.json").write_text(json.dumps({t: {"low": b.low, "high": b.high} for t, b in sorted(results.items())},
                                                indent=1) + "\n")
    (out / "report.json").write_text(json.dumps({t: vars(b) for t, b in sorted(results.items())}, indent=1) + "\n")
    for task, b in results.items():
        print(f"{task:24s} low {b.low}  high {b.high}  base {b.base_rate}  strong pass@k {b.strong_pass}")
    return results


if __name__ == "__main__":
    main()
