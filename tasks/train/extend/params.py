"""``extend``: the settings of staged length extension (report section 5), one place for all of them.

Windows are the report's ratios 40:48:56:64:72:80 times ``base_tokens`` (the report's 1000 gives
40K..80K). The tiny default picks the base so that every window but the last cuts the RL policy's
replies on its tasks, as the report's 40K window bound M1's: that policy writes 23-25 tokens for a
2-digit sum and 19-41 for bracket traces of depth 2-3 (it does not write longer replies for harder
items it never learned, e.g. 3-digit sums: LOG.md, issue 14), so 0.35 tokens per unit gives windows
of 14, 17, 20, 22, 25 and 28 tokens, and a 2-digit sum fits only from the fifth on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tasks.config import Params, param


@dataclass
class ExtensionTask(Params):
    """``extend.tasks.<name>``: one task of the extension's prompt mix."""

    SECTION: ClassVar[str] = "extend.tasks.*"
    weight: float = param(ge=0.0, help="relative share of the prompts drawn")
    levels: tuple[int, ...] = param((), ge=1, help="difficulty levels of the generated items (longer replies at "
                                                   "higher levels); the RL data's rows of the task come along")
    items: int = param(0, ge=0, help="items generated, spread evenly over levels (held-out questions left out)")

    def check(self) -> None:
        if bool(self.levels) != bool(self.items):
            raise self.fail("items", self.items, "an integer > 0 with levels, 0 without")


def _default_tasks() -> dict[str, ExtensionTask]:
    """Tasks whose replies run past the first window on the tiny default: the RL policy writes 23-25
    tokens for 2-digit sums and 13-37 for bracket traces of growing depth (LOG.md, issue 14)."""
    return {"arithmetic": ExtensionTask(weight=1.0, levels=(2,), items=200),
            "dyck_languages": ExtensionTask(weight=1.0, levels=(2, 3), items=300)}


@dataclass
class ExtendParams(Params):
    """``extend``: staged length extension after ``rl`` (report section 5): windows, the promotion
    rule, the mitigations against pattern collapse and the refilter before the last window."""

    SECTION: ClassVar[str] = "extend"
    ratios: tuple[int, ...] = param((40, 48, 56, 64, 72, 80), ge=1, help="output windows in units of base_tokens, "
                                                                        "increasing (the report's 40K -> 80K)")
    base_tokens: float = param(0.35, gt=0.0, help="tokens per unit: window = round(ratio x base_tokens); the report's "
                                                  "1000; tiny default 0.35 (windows of 14..28 tokens)")
    steps: int = param(24, ge=1, help="extension steps in all, counted on from the RL run's last step; the run "
                                      "ends in whatever window it has reached (tiny default: 4 steps a window at "
                                      "the quickest promotions, so every window is reached)")
    prompts_per_step: int = param(8, ge=1, help="prompts per generation batch (rl.samples_per_prompt replies each); "
                                                "a multiple of rl.updates_per_batch")
    tasks: dict[str, ExtensionTask] = param(default_factory=_default_tasks,
                                            help="task -> {weight, levels, items}: the extension's prompts")
    item_seed: int = param(3, help="seed of the generated items; apart from sft.item_seed and difficulty.generated_seed")
    heldout_items: int = param(48, ge=1, help="held-out items per task, over its levels: the windows' evaluations and "
                                              "the closing comparison of the RL and extended policies")
    heldout_seed: int = param(1_000_000, help="seed of the held-out items (arithmetic: >= 1e6 draws from its held-out "
                                              "tenth of operand pairs)")
    ppl_window: int = param(2, ge=1, help="promotion: the mean perplexity of the generated tokens over the last "
                                          "ppl_window steps of the window ...")
    ppl_tolerance: float = param(0.05, gt=0.0, help="... is within this relative change of the ppl_window steps "
                                                    "before (converged) ...")
    p99_near: float = param(0.9, gt=0.0, le=1.0, help="... and the last ppl_window steps' mean p99 reply length is "
                                                      ">= p99_near x the window")
    combined_normalization: bool = param(True, help="mitigation: sample-level + token-level loss normalization, "
                                                    "(token + sample) / 2, instead of rl.algorithms.<algorithm>'s")
    lower_grad_clip: bool = param(True, help="mitigation: clip gradients at grad_clip instead of rl.grad_clip")
    grad_clip: float = param(0.5, gt=0.0, help="the lower clip (rl.grad_clip is 1.0; the tiny RL's gradient norms "
                                               "are 0.7-1.2, LOG.md issue 14)")
    decreasing_eps_high: bool = param(True, help="mitigation: eps_high falls linearly over the windows, from the "
                                                 "algorithm's value in the first to eps_high_last in the last")
    eps_high_last: float = param(0.2, ge=0.0, help="eps_high of the last window")
    early_truncation: bool = param(True, help="mitigation: end a reply after repetition_n consecutive tokens each "
                                              "with p > repetition_p (report 3.2; rl's 3000 never fires in these windows)")
    repetition_n: int = param(24, ge=1, help="the tiny RL policy's replies hold runs of at most 10 such tokens "
                                             "(1152 replies; 16 seen during extension: LOG.md issue 14); the report's "
                                             "3000 at 40K-80K")
    repetition_p: float = param(0.99, ge=0.0, le=1.0, help="see repetition_n")
    refilter: bool = param(True, help="mitigation: before the last window, drop items the current policy finds easy "
                                      "and downsample synthetic (SynLogic) items")
    refilter_samples: int = param(4, ge=1, help="samples per item when grading for the refilter")
    refilter_easy: float = param(0.75, gt=0.0, le=1.0, help="items whose pass rate reaches this are dropped")
    synthetic_keep: float = param(0.5, ge=0.0, le=1.0, help="share of SynLogic items kept")
    eval_every: int = param(10, ge=0, help="steps between held-out evaluations, which also run at every promotion "
                                           "and at the end; 0 = only before the first window")
    checkpoint_every: int = param(2, ge=1, help="steps per checkpoint within a window (and at every promotion)")
    experiment: str = param("m1-extend", help="MLflow experiment (a run of its own when run outside the flow)")

    def check(self) -> None:
        if list(self.ratios) != sorted(set(self.ratios)):
            raise self.fail("ratios", list(self.ratios), "strictly increasing integers")
        if not self.tasks or not any(t.weight > 0 for t in self.tasks.values()):
            raise self.fail("tasks", {k: v.to_dict() for k, v in self.tasks.items()}, "at least one task with weight > 0")
