"""python -m tasks.synlogic.generate --params params.yaml --output data/synlogic/items.jsonl

The SynLogic data-synthesis stage (report section 4.1: "we synthesize approximately 53K logical
reasoning samples"): ``items_per_task`` items of every family, spread evenly over the levels of
its calibrated ``synlogic.difficulty`` range, one JSON object a line with a ``task`` field so
any stage can look up the verifier (``TASKS[row["task"]].verify(row, response)``). The same
params give the same file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tasks.synlogic import TASKS
from tasks.synlogic.base import SynLogicTask
from tasks.synlogic.schedule import load_params


def synlogic_names() -> list[str]:
    return sorted(n for n, t in TASKS.items() if isinstance(t, SynLogicTask))


def generate_items(bounds: dict[str, tuple[int, int]], items_per_task: int,
                   seed: int = 0) -> list[dict[str, Any]]:
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


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    args = parser.parse_args(argv)

    section = load_params(args.params)
    settings = section["generate"]
    names = [t for t in args.tasks.split(",") if t] or synlogic_names()
    bounds = {}
    for task in names:
        if task not in synlogic_names():
            raise SystemExit(f"--tasks: unknown SynLogic task {task!r}")
        b = section["difficulty"].get(task)
        bounds[task] = (b["low"], b["high"]) if b else TASKS[task].difficulty_range
    rows = generate_items(bounds, settings["items_per_task"], settings["seed"])
    out = write_items(rows, args.output)
    print(f"{len(rows)} items of {len(bounds)} tasks -> {out}")
    return out


if __name__ == "__main__":
    main()
