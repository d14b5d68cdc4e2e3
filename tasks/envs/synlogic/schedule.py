"""``synlogic``: the SynLogic stage's settings and the difficulty schedule (report section 4.1).

The report bounds each task's difficulty (calibrated by ``python -m tasks.curate.calibrate``) and
raises it "in the later stages" of training. ``DifficultySchedule`` maps a training step to a level
per task inside ``[low, high]``: ``linear`` climbs one level at a time between ``start_step`` and
``end_step``; ``stepped`` climbs in ``stages`` equal jumps.

Usage::

    from tasks.envs.synlogic.schedule import DifficultySchedule
    schedule = DifficultySchedule.from_params(synlogic_params)   # the ``synlogic`` section
    level = schedule.difficulty("sudoku", step=500)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from tasks.config import Params, param


@dataclass
class Bounds(Params):
    """``synlogic.difficulty.<task>``: the levels a task's items are drawn from."""

    SECTION: ClassVar[str] = "synlogic.difficulty.*"
    low: int = param(help="lowest level (the base policy's pass rate first lies in (0, 0.5] here)")
    high: int = param(help="highest level (the strong policy still solves some items here)")

    def check(self) -> None:
        if self.low > self.high:
            raise self.fail("low", self.low, f"low <= high ({self.high})")


@dataclass
class GenerateParams(Params):
    """``synlogic.generate``: ``python -m tasks.envs.synlogic.generate``."""

    SECTION: ClassVar[str] = "synlogic.generate"
    items_per_task: int = param(128, ge=1, help="items per task, spread evenly over its [low, high] (the difficulty "
                                                "stage grades those inside the calibrated bounds)")
    seed: int = param(0, help="the generators' seed")
    tasks: tuple[str, ...] = param(("dyck_languages", "object_counting", "object_properties"),
                                   help="the families to generate (the tiny default: the RL mix's, calibrate.tasks; all 40 "
                                        "took 1.7-2.4 min beside SFT); empty = every SynLogic family")


@dataclass
class ScheduleParams(Params):
    """``synlogic.schedule``: training step -> level inside each task's bounds."""

    SECTION: ClassVar[str] = "synlogic.schedule"
    kind: str = param("linear", choices=("linear", "stepped"),
                      help="linear climbs one level at a time; stepped climbs in `stages` equal jumps")
    start_step: int = param(0, ge=0, help="step the climb starts at")
    end_step: int = param(1000, ge=1, help="step the top level is reached at")
    stages: int = param(3, ge=1, help="stepped: number of equal jumps")

    def check(self) -> None:
        if self.end_step <= self.start_step:
            raise self.fail("end_step", self.end_step, f"an integer > start_step ({self.start_step})")


@dataclass
class SynLogicParams(Params):
    """``synlogic``: item generation, the difficulty schedule and each task's bounds."""

    SECTION: ClassVar[str] = "synlogic"
    generate: GenerateParams = param(default_factory=GenerateParams, help="item generation")
    schedule: ScheduleParams = param(default_factory=ScheduleParams, help="the step -> level schedule")
    difficulty: dict[str, Bounds] = param(default_factory=dict, help="{low, high} per task (calibrated); a task "
                                                                     "not listed spans its whole range")

    def bounds(self, task, name: str) -> tuple[int, int]:
        """``task``'s (low, high): its entry in ``difficulty``, else its whole range."""
        b = self.difficulty.get(name)
        if b is None:
            return tuple(task.difficulty_range)
        lo, hi = task.difficulty_range
        if not lo <= b.low <= b.high <= hi:
            raise self.fail(f"difficulty.{name}", b.to_dict(), f"low <= high inside the task's range [{lo}, {hi}]")
        return b.low, b.high


@dataclass
class DifficultySchedule:
    """Training step -> difficulty level of each task, inside its calibrated ``[low, high]``."""

    bounds: dict[str, tuple[int, int]]
    settings: ScheduleParams = field(default_factory=ScheduleParams)

    def __post_init__(self):
        for task, (low, high) in self.bounds.items():
            if low > high:
                raise ValueError(f"synlogic.difficulty.{task}: low {low} exceeds high {high}")

    @classmethod
    def from_params(cls, params: SynLogicParams, tasks: dict) -> DifficultySchedule:
        """Bounds of every task in ``tasks`` (name -> Task) and the ``synlogic.schedule`` settings."""
        return cls({name: params.bounds(task, name) for name, task in tasks.items()}, params.schedule)

    def progress(self, step: int) -> float:
        """Share of the schedule done at ``step``, in [0, 1]."""
        s = self.settings
        return min(1.0, max(0.0, (step - s.start_step) / (s.end_step - s.start_step)))

    def difficulty(self, task: str, step: int) -> int:
        if task not in self.bounds:
            raise KeyError(f"no synlogic.difficulty entry for task {task!r}")
        low, high = self.bounds[task]
        p = self.progress(step)
        if self.settings.kind == "stepped":
            stages = self.settings.stages
            stage = min(stages - 1, math.floor(p * stages))
            p = stage / (stages - 1) if stages > 1 else 0.0
        return low + math.floor(p * (high - low) + 0.5)

    def __call__(self, step: int) -> dict[str, int]:
        """Every task's level at ``step``."""
        return {task: self.difficulty(task, step) for task in self.bounds}
