"""python -m tasks.envs.synlogic.generate --output data/synlogic [--params params.yaml] [--set KEY=VALUE]

The SynLogic data-synthesis stage (report section 4.1: "we synthesize approximately 53K logical
reasoning samples"): ``synlogic.generate.items_per_task`` items of every family (or of the
families named in ``synlogic.generate.tasks``), spread evenly over the levels of its
``synlogic.difficulty`` range, written to ``DIR/items.jsonl``, one JSON object a line with a
``task`` field so any stage can look up the verifier (``TASKS[row["task"]].verify(row, response)``),
and counts per task to ``DIR/report.json``. The same params give the same files.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tasks.config import exits_cleanly, load, stage_parser
from tasks.envs.synlogic import TASKS
from tasks.envs.synlogic.base import SynLogicTask
from tasks.envs.synlogic.schedule import SynLogicParams


def synlogic_names() -> list[str]:
    return sorted(n for n, t in TASKS.items() if isinstance(t, SynLogicTask))


def generate_items(bounds: dict[str, tuple[int, int]], items_per_task: int, seed: int) -> list[dict[str, Any]]:
    """Items of each task in ``bounds``, split as evenly as possible over levels low..high."""
    rows = []
    for task in tqdm(sorted(bounds), desc="synlogic"):
        if task not in TASKS or not isinstance(TASKS[task], SynLogicTask):
            raise KeyError(f"synlogic.difficulty.{task}: not a SynLogic task")
        low, high = bounds[task]
        levels = list(range(low, high + 1))
        for i, lv in enumerate(levels):
            count = items_per_task // len(levels) + (i < items_per_task % len(levels))
            rows += [{"task": task, **item} for item in TASKS[task].generate(count, seed, lv)]
    return rows


def write_items(rows: list[dict[str, Any]], output: str | Path) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    tmp.replace(output)
    return output


PARAMS = {"synlogic": SynLogicParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> Path:
    args = stage_parser(__doc__, prog="python -m tasks.envs.synlogic.generate").parse_args(argv)
    params = load(args.params, PARAMS, args.set)["synlogic"]
    known = synlogic_names()
    names = list(params.generate.tasks) or known
    unknown = [t for t in names if t not in known]
    if unknown:
        raise params.fail("generate.tasks", unknown, f"SynLogic task names: {', '.join(known)}")
    bounds = {name: params.bounds(TASKS[name], name) for name in names}
    rows = generate_items(bounds, params.generate.items_per_task, params.generate.seed)
    out = Path(args.output)
    write_items(rows, out / "items.jsonl")
    report = {"items": len(rows), "by_task": dict(sorted(Counter(r["task"] for r in rows).items())),
              "bounds": {name: list(b) for name, b in sorted(bounds.items())}}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(rows)} items of {len(bounds)} tasks -> {out / 'items.jsonl'}")
    return out


if __name__ == "__main__":
    main()
