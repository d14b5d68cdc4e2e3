"""The online length-bias monitor and the reward shaping that blunts length-driven reward (report 4.2.2).

"Specific metrics are established to detect whether the RL policy disproportionately extends output
lengths to maximize GenRMs rewards without gains in task success ... Upon detecting such
detrimental length-seeking behavior ... immediate GenRMs recalibration is triggered." Here:

- every RL step adds its judged replies ``(group, stratum, length, judge score, rule success)``;
- over the last ``window`` steps: ``corr``, the Pearson correlation of judge score with length after
  removing each (prompt group, rule success) stratum's mean from both (so only replies with equal
  rule-checked success on the same prompt are compared); ``growth``, the mean length of the window's
  newer half over its older half; ``gain``, rule success of the newer half minus the older half;
- it fires when ``corr > corr_threshold`` and ``growth > min_growth`` and ``gain < max_gain``, then
  stays quiet for ``cooldown`` steps and starts a fresh window (the judge was just recalibrated).

``shape`` removes ``length_debias`` of the window's positive score-on-length slope from each judge
score (relative to its group's mean length) and clips the result to ``clip``.

    monitor = LengthBiasMonitor(params.monitor)
    monitor.observe(step, [Judged(group=0, success=1.0, length=31, score=1.0), ...])
    if monitor.check(step).fired: ...  # log an event, recalibrate the judge, carry on
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from tasks.envs.genrm.params import MonitorParams


@dataclass(frozen=True)
class Judged:
    """One judged reply: its prompt group, its rule-checked success (with the group, the stratum; also
    what ``gain`` averages), its length in tokens and the judge's score (None: not counted)."""

    group: int
    success: float
    length: int
    score: float | None


@dataclass(frozen=True)
class Reading:
    """The monitor's statistic at one step."""

    corr: float
    slope: float
    growth: float
    gain: float
    samples: int
    fired: bool

    def as_metrics(self, prefix: str = "genrm/monitor/") -> dict[str, float]:
        return {f"{prefix}length_corr": self.corr, f"{prefix}length_slope": self.slope,
                f"{prefix}length_growth": self.growth, f"{prefix}success_gain": self.gain,
                f"{prefix}samples": float(self.samples), f"{prefix}fired": float(self.fired)}


def within_strata(keys: list, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` with their mean in each stratum (equal key) removed."""
    xc, yc = x.astype(float).copy(), y.astype(float).copy()
    index: dict = {}
    for i, k in enumerate(keys):
        index.setdefault(k, []).append(i)
    for rows in index.values():
        xc[rows] -= xc[rows].mean()
        yc[rows] -= yc[rows].mean()
    return xc, yc


class LengthBiasMonitor:
    """The window of judged replies and the firing rule (``MonitorParams``)."""

    def __init__(self, params: MonitorParams):
        self.params = params
        self.steps: deque[tuple[int, list[Judged]]] = deque(maxlen=params.window)
        self.quiet_until = -1
        self.fired_at: list[int] = []

    def observe(self, step: int, judged: list[Judged]) -> None:
        """Add one step's judged replies (groups numbered within the step)."""
        self.steps.append((step, [j for j in judged if j.score is not None]))

    def _rows(self, steps) -> list[tuple[int, int, Judged]]:
        return [(k, s, j) for k, (s, js) in enumerate(steps) for j in js]

    def reading(self) -> tuple[float, float, float, float, int]:
        """``(corr, slope, growth, gain, samples)`` over the window (0s when it is too small)."""
        rows = self._rows(self.steps)
        if len(rows) < 4:
            return 0.0, 0.0, 1.0, 0.0, len(rows)
        keys = [(s, j.group, j.success) for _, s, j in rows]
        length = np.array([j.length for _, _, j in rows], float)
        score = np.array([j.score for _, _, j in rows], float)
        x, y = within_strata(keys, length, score)
        sx, sy = np.sqrt((x * x).sum()), np.sqrt((y * y).sum())
        corr = float((x * y).sum() / (sx * sy)) if sx > 0 and sy > 0 else 0.0
        slope = float((x * y).sum() / (x * x).sum()) if sx > 0 else 0.0
        half = len(self.steps) // 2
        old = [j for k, _, j in rows if k < half]
        new = [j for k, _, j in rows if k >= half]
        if not old or not new:
            return corr, slope, 1.0, 0.0, len(rows)
        growth = float(np.mean([j.length for j in new]) / max(np.mean([j.length for j in old]), 1e-9))
        gain = float(np.mean([j.success for j in new]) - np.mean([j.success for j in old]))
        return corr, slope, growth, gain, len(rows)

    def check(self, step: int) -> Reading:
        """The statistic now, and whether it fires at ``step`` (after which the window restarts)."""
        corr, slope, growth, gain, n = self.reading()
        p = self.params
        fired = (p.enabled and step > self.quiet_until and n >= p.min_samples and len(self.steps) == p.window
                 and corr > p.corr_threshold and growth > p.min_growth and gain < p.max_gain)
        if fired:
            self.fired_at.append(step)
            self.quiet_until = step + p.cooldown
            self.steps.clear()
        return Reading(corr, slope, growth, gain, n, fired)

    def shape(self, groups: list[list[tuple[int, float | None]]]) -> list[list[float | None]]:
        """Judge scores with ``length_debias`` of the window's positive length slope removed, per
        group around its mean length, then clipped to ``clip``; ``groups``: ``[(length, score)]``
        per prompt group (score None: uncounted, left None)."""
        _, slope, _, _, _ = self.reading()
        slope = max(slope, 0.0) * self.params.length_debias
        lo, hi = self.params.clip
        out = []
        for group in groups:
            lengths = [n for n, s in group if s is not None]
            mean = float(np.mean(lengths)) if lengths else 0.0
            out.append([None if s is None else float(np.clip(s - slope * (n - mean), lo, hi)) for n, s in group])
        return out

    def state_dict(self) -> dict:
        return {"steps": list(self.steps), "quiet_until": self.quiet_until, "fired_at": list(self.fired_at)}

    def load_state_dict(self, state: dict) -> None:
        self.steps = deque(state["steps"], maxlen=self.params.window)
        self.quiet_until, self.fired_at = state["quiet_until"], list(state["fired_at"])
