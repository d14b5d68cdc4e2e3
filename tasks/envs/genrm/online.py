"""The GenRM inside the RL loop (report 4.2-4.3): batched judging of the general tasks' replies, the
online length-bias monitor, reward shaping, and recalibration when the monitor fires.

    online = OnlineJudge(genrm_params, "runs/genrm", "runs/rl")
    rows = online.rows()                                 # {task: items}: the stage's Swiss-referenced pool
    scores = online.score(drawn, texts, lengths, observe=True)   # {group index: rewards} of judged tasks
    metrics, event = online.end_step(step)               # monitor reading, judge throughput, recalibration

``score`` judges every general-task reply of a rollout in one batched call per task, shapes the judge
scores (``LengthBiasMonitor.shape``), combines them with the rule part, and fills replies the judge
did not score with their group's mean (zero advantage: they teach nothing, and are counted).
``end_step`` closes the step's window entry; when the monitor fires it writes an event
(``events.jsonl`` and the ``genrm/monitor/fired`` metric), fine-tunes the judge on length-balanced
pairs (``finetune.recalibrate``) and swaps the new weights in before the next step.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from tasks.envs.genrm.finetune import recalibrate
from tasks.envs.genrm.general import INSTRUCT, OPEN_PROMPT
from tasks.envs.genrm.judge import Judge
from tasks.envs.genrm.monitor import Judged, LengthBiasMonitor
from tasks.envs.genrm.params import GenRMParams


def read_pool(path: str | Path) -> list[dict[str, Any]]:
    """The general items with references that the ``genrm`` stage wrote (``general.jsonl``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no general-task pool; run the genrm stage (python -m tasks.envs.genrm.stage)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fill_unscored(scores: list[float | None]) -> list[float]:
    """A group's rewards with unscored replies set to the mean of the scored (all unscored: 0)."""
    known = [s for s in scores if s is not None]
    mean = float(np.mean(known)) if known else 0.0
    return [mean if s is None else s for s in scores]


class OnlineJudge:
    """The judge, its monitor and its recalibrations for one RL run (state in ``state_dict``)."""

    def __init__(self, params: GenRMParams, genrm_dir: str | Path, out_dir: str | Path):
        self.params = params
        self.judge_dir = Path(genrm_dir) / "judge" / "policy"
        self.pool = read_pool(Path(genrm_dir) / "general.jsonl")
        self.judge = Judge.load(self.judge_dir, params.judge)
        self.tasks = {t.name: t.with_judge(self.judge, params.general) for t in (OPEN_PROMPT, INSTRUCT)}
        self.monitor = LengthBiasMonitor(params.monitor)
        self.out = Path(out_dir) / "genrm"
        self.pending: list[Judged] = []
        self.counts: dict[str, int] = defaultdict(int)
        self.recalibrations = 0
        self._mark = (0, 0.0, 0)

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """The stage's general items by task, references chosen: RL prompts of the judged tasks."""
        out: dict[str, list[dict[str, Any]]] = {}
        for item in self.pool:
            out.setdefault(item["task"], []).append(item)
        return out

    def score(self, drawn: list[tuple[str, dict]], texts: list[list[str]], lengths: list[list[int]], *,
              observe: bool) -> dict[int, list[float]]:
        """Rewards of the groups whose task the judge scores, by group index: one judging call per
        task; judge scores shaped against length, combined with the rules, unscored replies filled.
        ``observe``: the replies enter the monitor's window (training rollouts, not evaluation)."""
        by_task: dict[str, list[int]] = defaultdict(list)
        for j, (name, _) in enumerate(drawn):
            if name in self.tasks:
                by_task[name].append(j)
        out: dict[int, list[float]] = {}
        for name, groups in by_task.items():
            task = self.tasks[name]
            scored = task.judge_batch([drawn[j][1] for j in groups for _ in texts[j]], [t for j in groups for t in texts[j]])
            k = 0
            for j in groups:
                mine, k = scored[k : k + len(texts[j])], k + len(texts[j])
                shaped = self.monitor.shape([[(n, s.judge) for n, s in zip(lengths[j], mine)]])[0]
                rewards = [s.reward if s.judge is None else task.combine(s.rule, sj) for s, sj in zip(mine, shaped)]
                out[j] = fill_unscored(rewards)
                if observe:
                    self.counts["replies"] += len(mine)
                    self.counts["unscored"] += sum(r is None for r in rewards)
                    group = len({p.group for p in self.pending})
                    self.pending += [Judged(group, 1.0 if s.rule is None else s.rule, n, s.judge)
                                     for n, s in zip(lengths[j], mine)]
        return out

    def end_step(self, step: int) -> tuple[dict[str, float], dict[str, Any] | None]:
        """Close the step: the monitor's reading, judge throughput this step, unscored share; when the
        monitor fires, an event and (``monitor.recalibrate``) a recalibrated judge."""
        self.monitor.observe(step, self.pending)
        self.pending = []
        reading = self.monitor.check(step)
        prompts, seconds, malformed = self._mark
        st = self.judge.stats
        d_prompts, d_seconds = st.prompts - prompts, st.seconds - seconds
        metrics = {**reading.as_metrics(),
                   "genrm/judge/prompts": float(d_prompts),
                   "genrm/judge/prompts_per_s": d_prompts / d_seconds if d_seconds else 0.0,
                   "genrm/judge/seconds": d_seconds,
                   "genrm/judge/malformed": float(st.malformed - malformed),
                   "genrm/unscored_rate": self.counts["unscored"] / max(self.counts["replies"], 1),
                   "genrm/recalibrations": float(self.recalibrations)}
        self.counts.clear()
        event = None
        if reading.fired:
            event = {"step": step, "event": "length_bias", **reading.as_metrics(prefix="")}
            if self.params.monitor.recalibrate:
                t0 = time.perf_counter()
                new = recalibrate(self.params, self.judge_dir, self.out / f"recal_{step:06d}", seed=step)
                self.judge.swap(new)
                self.judge_dir, self.recalibrations = new, self.recalibrations + 1
                event.update(judge=str(new), recalibration_seconds=time.perf_counter() - t0)
                metrics["genrm/recalibrations"] = float(self.recalibrations)
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "events.jsonl", "a") as f:
                f.write(json.dumps(event) + "\n")
        self._mark = (st.prompts, st.seconds, st.malformed)
        return metrics, event

    def state_dict(self) -> dict[str, Any]:
        return {"judge_dir": str(self.judge_dir), "monitor": self.monitor.state_dict(),
                "recalibrations": self.recalibrations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a resumed run: its monitor window and its latest (recalibrated) judge."""
        self.monitor.load_state_dict(state["monitor"])
        self.recalibrations = state["recalibrations"]
        if Path(state["judge_dir"]) != self.judge_dir:
            self.judge_dir = Path(state["judge_dir"])
            self.judge.swap(self.judge_dir)  # the bound tasks hold this same judge object
