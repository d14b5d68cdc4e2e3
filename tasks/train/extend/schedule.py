"""The windows, the promotion rule and each window's RL settings (report section 5).

    wins = windows(params)                               # [40, 48, 56, 64, 72, 80] at the tiny default
    decision = promotion(rows, wins[k], params)          # rows: the window's per-step metrics, oldest first
    cfg = window_params(rl, params, k, wins, end=...)    # the RL settings of window k, mitigations applied

Promotion (the report's two indicators): the perplexity of the generated tokens has converged, the
mean perplexity of the last ``ppl_window`` steps within ``ppl_tolerance`` (relative) of the mean of
the ``ppl_window`` steps before them, and the mean p99 reply length of the last ``ppl_window`` steps
is at least ``p99_near`` times the window. Both read the rollouts of the window itself
(``rollout/perplexity``, ``length/p99`` of ``tasks.train.rl.train``), so a window needs
``2 * ppl_window`` steps before it can be left. Block means, not single steps: one step's perplexity
moves by 5-10% with the batch's mix of tasks on the tiny default (LOG.md, issue 14).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from tasks.train.extend.params import ExtendParams
from tasks.train.rl.config import Phase, RLParams


def windows(params: ExtendParams) -> list[int]:
    """Output windows in tokens: each ratio times ``base_tokens``, rounded; they must grow."""
    wins = [max(1, round(r * params.base_tokens)) for r in params.ratios]
    if any(b <= a for a, b in zip(wins, wins[1:])):
        raise params.fail("base_tokens", params.base_tokens, f"a value giving increasing windows (got {wins})")
    return wins


def eps_high_at(k: int, count: int, first: float, last: float) -> float:
    """eps_high of window ``k`` of ``count``: linear from ``first`` (window 0) to ``last``."""
    return first if count == 1 else first + (last - first) * k / (count - 1)


@dataclass(frozen=True)
class Decision:
    """The rule's verdict at one step: ``promote``, and why in words; the two indicators."""

    promote: bool
    reason: str
    ppl_change: float  # relative change of the mean perplexity between the last two blocks; nan with too few steps
    p99: float  # mean p99 reply length of the last block; nan with too few steps


def promotion(rows: list[dict[str, float]], window: int, params: ExtendParams) -> Decision:
    """Whether to move on from ``window`` after the steps ``rows`` (this window's metrics, oldest
    first; lines without ``rollout/perplexity``, evaluations alone, are skipped)."""
    steps = [r for r in rows if "rollout/perplexity" in r and "length/p99" in r]
    w = params.ppl_window
    if len(steps) < 2 * w:
        return Decision(False, f"hold: {len(steps)} of the {2 * w} steps the rule reads", math.nan, math.nan)
    before = sum(r["rollout/perplexity"] for r in steps[-2 * w : -w]) / w
    now = sum(r["rollout/perplexity"] for r in steps[-w:]) / w
    change = abs(now - before) / before
    p99 = sum(r["length/p99"] for r in steps[-w:]) / w
    converged, near = change < params.ppl_tolerance, p99 >= params.p99_near * window
    why = (f"mean perplexity of the last {w} steps {now:.3f}, {100 * change:.1f}% from the {w} before "
           f"({'<' if converged else '>='} {100 * params.ppl_tolerance:g}%), p99 reply length {p99:.1f} "
           f"{'>=' if near else '<'} {params.p99_near:g} x {window}")
    return Decision(converged and near, ("promote: " if converged and near else "hold: ") + why, change, p99)


def window_params(rl: RLParams, params: ExtendParams, k: int, wins: list[int], *, end: int) -> RLParams:
    """The RL settings of window ``k``: reply budget = the window, the extension's prompt mix and batch,
    training to step ``end`` at most, and each mitigation that is switched on."""
    window = wins[k]
    algo = rl.algo
    if params.decreasing_eps_high:
        algo = dataclasses.replace(algo, eps_high=eps_high_at(k, len(wins), algo.eps_high, params.eps_high_last))
    if params.combined_normalization:
        algo = dataclasses.replace(algo, normalization="combined")
    return dataclasses.replace(
        rl,
        steps=end,
        prompts_per_step=params.prompts_per_step,
        max_new_tokens=window,
        # DAPO's overlong buffer keeps its share of the reply budget
        overlong_buffer=min(window, round(rl.overlong_buffer * window / rl.max_new_tokens)),
        grad_clip=params.grad_clip if params.lower_grad_clip else rl.grad_clip,
        repetition_n=params.repetition_n if params.early_truncation else rl.repetition_n,
        repetition_p=params.repetition_p if params.early_truncation else rl.repetition_p,
        curriculum=(Phase(steps=1, weights={t: s.weight for t, s in params.tasks.items() if s.weight > 0}),),
        eval_every=params.eval_every,
        checkpoint_every=params.checkpoint_every,
        keep_checkpoints=1,  # written atomically: the newest is whole, and older ones only cost disk
        experiment=params.experiment,
        run_name=f"extend-window{k}-{window}",
        algorithms=dataclasses.replace(rl.algorithms, **{rl.algorithm: algo}),
    )


def mitigations(cfg: RLParams, params: ExtendParams, k: int, window: int) -> dict[str, float]:
    """What window ``k`` runs with, as metrics (logged when the window starts)."""
    return {
        "extend/window": k, "extend/window_tokens": window, "extend/eps_high": cfg.algo.eps_high,
        "extend/grad_clip": cfg.grad_clip, "extend/repetition_n": cfg.repetition_n,
        "extend/combined_normalization": float(cfg.algo.normalization == "combined"),
        "extend/early_truncation": float(params.early_truncation),
        "extend/lower_grad_clip": float(params.lower_grad_clip),
        "extend/decreasing_eps_high": float(params.decreasing_eps_high),
    }
