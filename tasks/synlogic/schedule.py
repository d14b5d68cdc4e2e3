"""Settings of the SynLogic stage and the difficulty schedule (report section 4.1).

The report bounds each task's difficulty (calibrated by ``python -m tasks.calibrate``) and raises
it "in the later stages" of training. ``DifficultySchedule`` maps a training step to a level per
task inside ``[low, high]``: ``linear`` climbs one level at a time between ``start_step`` and
``end_step``; ``stepped`` climbs in ``stages`` equal jumps.

Usage::

    from tasks.synlogic.schedule import DifficultySchedule, load_params
    schedule = DifficultySchedule.from_params(load_params("params.yaml"))
    level = schedule.difficulty("sudoku", step=500)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CALIBRATE_DEFAULTS: dict[str, Any] = {
    "items": 16, "base_samples": 4, "strong_samples": 10, "max_base_rate": 0.5,
    "max_new_tokens": 1024, "temperature": 1.0, "top_p": 0.95, "batch_size": 32, "seed": 0,
}
SCHEDULE_DEFAULTS: dict[str, Any] = {"kind": "linear", "start_step": 0, "end_step": 1000, "stages": 3}
GENERATE_DEFAULTS: dict[str, Any] = {"items_per_task": 64, "seed": 0}
_SECTIONS = {"calibrate": CALIBRATE_DEFAULTS, "schedule": SCHEDULE_DEFAULTS, "generate": GENERATE_DEFAULTS}


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The ``synlogic`` section of a params file, with the defaults filled in.

    Keys: ``calibrate`` (settings of tasks.calibrate), ``schedule``, ``generate`` (settings of
    tasks.synlogic.generate) and ``difficulty`` (``{task: {low, high}}``).
    """
    raw = yaml.safe_load(Path(path).read_text()) or {}
    section = raw.get("synlogic") or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: 'synlogic' must be a mapping")
    out: dict[str, Any] = {"difficulty": dict(section.get("difficulty") or {})}
    for key in section:
        if key not in _SECTIONS and key != "difficulty":
            raise ValueError(f"{path}: unknown key synlogic.{key}")
    for key, defaults in _SECTIONS.items():
        given = section.get(key) or {}
        unknown = set(given) - set(defaults)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) synlogic.{key}.{sorted(unknown)}")
        out[key] = {**defaults, **given}
    return out


@dataclass
class DifficultySchedule:
    """Training step -> difficulty level of each task, inside its calibrated ``[low, high]``."""

    bounds: dict[str, tuple[int, int]] = field(default_factory=dict)
    kind: str = "linear"
    start_step: int = 0
    end_step: int = 1000
    stages: int = 3

    def __post_init__(self):
        if self.kind not in ("linear", "stepped"):
            raise ValueError(f"synlogic.schedule.kind must be 'linear' or 'stepped', not {self.kind!r}")
        if self.end_step <= self.start_step:
            raise ValueError(f"synlogic.schedule: end_step {self.end_step} must exceed "
                             f"start_step {self.start_step}")
        if self.stages < 1:
            raise ValueError(f"synlogic.schedule.stages must be at least 1, not {self.stages}")
        for task, (low, high) in self.bounds.items():
            if low > high:
                raise ValueError(f"synlogic.difficulty.{task}: low {low} exceeds high {high}")

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> DifficultySchedule:
        """From ``load_params``'s result: ``schedule`` settings and ``difficulty`` bounds."""
        bounds = {}
        for task, b in section.get("difficulty", {}).items():
            if not isinstance(b, dict) or not {"low", "high"} <= set(b):
                raise ValueError(f"synlogic.difficulty.{task} needs 'low' and 'high', got {b!r}")
            bounds[task] = (int(b["low"]), int(b["high"]))
        sched = {**SCHEDULE_DEFAULTS, **section.get("schedule", {})}
        return cls(bounds=bounds, kind=sched["kind"], start_step=int(sched["start_step"]),
                   end_step=int(sched["end_step"]), stages=int(sched["stages"]))

    def progress(self, step: int) -> float:
        """Share of the schedule done at ``step``, in [0, 1]."""
        return min(1.0, max(0.0, (step - self.start_step) / (self.end_step - self.start_step)))

    def difficulty(self, task: str, step: int) -> int:
        if task not in self.bounds:
            raise KeyError(f"no synlogic.difficulty entry for task {task!r}")
        low, high = self.bounds[task]
        p = self.progress(step)
        if self.kind == "stepped":
            stage = min(self.stages - 1, math.floor(p * self.stages))
            p = stage / (self.stages - 1) if self.stages > 1 else 0.0
        return low + math.floor(p * (high - low) + 0.5)

    def __call__(self, step: int) -> dict[str, int]:
        """Every task's level at ``step``."""
        return {task: self.difficulty(task, step) for task in self.bounds}
