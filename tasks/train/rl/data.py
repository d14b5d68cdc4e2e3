"""Where RL's prompts come from: the ``rl_data`` stage's files and the curriculum of ``rl.curriculum``.

    data = RLData.load("data/rl")                 # mix.parquet + heldout.jsonl of tasks.curate.rl_data
    weights = phase_weights(cfg, data)            # each phase's weights over the tasks the data holds
    drawn = draw_prompts(cfg, weights, data, cursor, n, step)   # [(task, item)]: the same for the same cursor

The curriculum is a list of phases, each ``{steps, weights: {task: weight}}``: a prompt of a step in
phase p is drawn from task t with probability proportional to ``weights[t] x rows of t``, then
uniformly among that task's rows; a weight is what each row of its task counts, so 1.0 everywhere
draws in the data's own proportions. (Task-level shares drew a task that the difficulty filter had
left one row of, code_io's, for a sixth of all prompts: RL taught the policy that one program for
every code prompt, 2026-12-02 in docs/LOG.md.) Phases run in order for their ``steps``; the last runs to the end of training. The
report starts with rule-verified tasks only and mixes in GenRM-judged general tasks later: a later
phase that names general tasks needs rows of them in the RL data (``rl_data``) and a judge bound to
their verifier (issue 13). A task a phase names but the data lacks (e.g. every curated math item
graded too hard) is left out of that phase, and said so; a phase left with no task is an error.

Prompt ``i`` of the run is a pure function of ``(rl.seed, i, its phase)``, so a resumed run draws
exactly the prompts the uninterrupted one would have.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.config import UsageError
from tasks.envs.scoring import item_from_row
from tasks.train.rl.config import RLParams


@dataclass
class RLData:
    """The RL rows by task and the held-out evaluation items by family."""

    rows: dict[str, list[dict[str, Any]]]
    heldout: dict[str, list[dict[str, Any]]]

    @classmethod
    def load(cls, data_dir: str | Path) -> RLData:
        import polars as pl

        data_dir = Path(data_dir)
        mix, held = data_dir / "mix.parquet", data_dir / "heldout.jsonl"
        for path in (mix, held):
            if not path.is_file():
                raise UsageError(f"{path}: no such file; the RL data comes from `python -m tasks.curate.rl_data`")
        rows: dict[str, list[dict[str, Any]]] = {}
        for row in pl.read_parquet(mix).iter_rows(named=True):
            rows.setdefault(row["task"], []).append(item_from_row(row))
        heldout: dict[str, list[dict[str, Any]]] = {}
        for line in held.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                heldout.setdefault(item["family"], []).append(item)
        return cls(rows, heldout)


def phase_at(cfg: RLParams, step: int) -> int:
    """Index of the curriculum phase that ``step`` (0-based) belongs to."""
    end = 0
    for p, phase in enumerate(cfg.curriculum[:-1]):
        end += phase.steps
        if step < end:
            return p
    return len(cfg.curriculum) - 1


def phase_weights(cfg: RLParams, data: RLData) -> list[dict[str, float]]:
    """Each phase's draw weights over the tasks the data holds (``weights[t] x rows of t``); a phase
    with none left is an error."""
    out = []
    for p, phase in enumerate(cfg.curriculum):
        weights = {t: w * len(data.rows[t]) for t, w in phase.weights.items() if w > 0 and data.rows.get(t)}
        if not weights:
            raise UsageError(f"rl.curriculum[{p}].weights: none of {sorted(phase.weights)} has rows in the RL data "
                             f"(it holds {', '.join(f'{t}: {len(r)}' for t, r in sorted(data.rows.items())) or 'nothing'})")
        out.append(weights)
    return out


def draw_prompts(cfg: RLParams, weights: list[dict[str, float]], data: RLData, cursor: int, n: int,
                 step: int) -> list[tuple[str, dict]]:
    """Prompts ``cursor .. cursor + n - 1`` of the run's deterministic stream, as (task name, item),
    drawn with the weights of the phase ``step`` is in."""
    phase = weights[phase_at(cfg, step)]
    names = sorted(phase)
    drawn = []
    for i in range(cursor, cursor + n):
        rng = random.Random(f"{cfg.seed}-{i}")
        name = rng.choices(names, [phase[t] for t in names])[0]
        rows = data.rows[name]
        drawn.append((name, rows[rng.randrange(len(rows))]))
    return drawn
