"""The extension's prompts, and the refilter before the last window (report section 5, "Data").

    write_extension_data(rl_data_dir, params, envs, out)     # out/mix.parquet + out/heldout.jsonl
    kept, report = refilter(rows, pass_rates, params)         # the last window's rows

The mix holds, for each task of ``extend.tasks``, the RL data's rows of that task (``rl_data``'s
mix.parquet, graded and decontaminated) and ``items`` fresh items generated at its ``levels``: the
harder, longer items a longer window lets the policy finish. Generated questions in the held-out
tenth (``tasks.envs.heldout``) are left out; the held-out file holds ``heldout_items`` items per task
drawn from that tenth over the same levels, levels interleaved so any prefix covers them all.

The report's refilter: "remove samples that are easily solved ... downsample synthetic reasoning
data". Items whose pass rate under the current policy reaches ``refilter_easy`` go; of the synthetic
items (source ``synlogic``: SynLogic families) a fixed ``synthetic_keep`` share stays, chosen by a
CRC of the item id so a rerun keeps the same ones.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

from tasks.config import UsageError
from tasks.curate.rl_data import MIX_COLUMNS
from tasks.envs.params import EnvParams
from tasks.train.extend.params import ExtendParams


def _row(item: dict[str, Any], task: str, source: str) -> dict[str, Any]:
    return {"id": str(item["id"]), "task": task, "source": source, "question": item["question"],
            "answer": str(item["answer"]), "metadata": json.dumps(item.get("metadata") or {}, sort_keys=True),
            "difficulty": item.get("difficulty"), "pass_rate": None}


def extension_rows(rl_data_dir: str | Path, params: ExtendParams, envs: EnvParams) -> tuple[list[dict], list[dict]]:
    """``(rows, heldout)``: the mix's rows (``MIX_COLUMNS``) and the held-out items (with ``family``)."""
    import polars as pl

    from tasks.envs.heldout import is_held_out
    from tasks.envs.registry import get_task
    from tasks.envs.synlogic.base import SynLogicTask

    mix = Path(rl_data_dir) / "mix.parquet"
    if not mix.is_file():
        raise UsageError(f"{mix}: no such file; the RL data comes from `python -m tasks.curate.rl_data`")
    rl_rows = pl.read_parquet(mix).filter(pl.col("task").is_in(list(params.tasks))).to_dicts()
    rows = [{c: r[c] for c in MIX_COLUMNS} for r in rl_rows]
    seen = {r["question"] for r in rows}
    heldout: list[dict] = []
    for name, spec in params.tasks.items():
        try:
            task = get_task(name, envs)
        except KeyError as e:
            raise params.fail(f"tasks.{name}", name, e.args[0]) from None
        lo, hi = task.difficulty_range
        if not all(lo <= lv <= hi for lv in spec.levels):
            raise params.fail(f"tasks.{name}.levels", list(spec.levels), f"levels inside the task's range [{lo}, {hi}]")
        source = "synlogic" if isinstance(task, SynLogicTask) else "generated"
        by_level = []
        for i, lv in enumerate(spec.levels):
            count = spec.items // len(spec.levels) + (i < spec.items % len(spec.levels))
            for it in task.generate(count, seed=params.item_seed, difficulty=lv):
                if not is_held_out(it["question"]) and it["question"] not in seen:
                    seen.add(it["question"])
                    rows.append(_row(it, name, source))
            want = params.heldout_items // len(spec.levels) + (i < params.heldout_items % len(spec.levels))
            found = [it for it in task.generate(40 * want, seed=params.heldout_seed, difficulty=lv)
                     if is_held_out(it["question"])]
            by_level.append(list({it["question"]: it for it in found}.values())[:want])
        for j in range(max((len(b) for b in by_level), default=0)):  # levels interleaved
            heldout += [{"family": name, "task": name, **b[j]} for b in by_level if j < len(b)]
    missing = [t for t, s in params.tasks.items() if s.weight > 0 and not any(r["task"] == t for r in rows)]
    if missing:
        raise UsageError(f"extend.tasks: {missing} have no rows in {mix} and no generated items (set levels and items)")
    return rows, heldout


def write_data(out_dir: str | Path, rows: list[dict], heldout: list[dict]) -> Path:
    """An RL data folder (``mix.parquet``, ``heldout.jsonl``: what ``tasks.train.rl.data.RLData`` reads),
    written beside and renamed into place, so a kill never leaves half of one."""
    import polars as pl

    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    schema = {c: pl.Int64 if c == "difficulty" else pl.Float64 if c == "pass_rate" else pl.String for c in MIX_COLUMNS}
    pl.DataFrame(rows, schema=schema).write_parquet(tmp / "mix.parquet")
    (tmp / "heldout.jsonl").write_text("".join(json.dumps(h, sort_keys=True) + "\n" for h in heldout))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def read_data(data_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """The rows and held-out items of a folder written by ``write_data``."""
    import polars as pl

    data_dir = Path(data_dir)
    held = [json.loads(line) for line in (data_dir / "heldout.jsonl").read_text().splitlines() if line.strip()]
    return pl.read_parquet(data_dir / "mix.parquet").to_dicts(), held


def kept_share(item_id: str) -> float:
    """A fixed number in [0, 1) per item: synthetic items below ``synthetic_keep`` stay."""
    return zlib.crc32(item_id.encode()) / 2**32


def refilter(rows: list[dict], pass_rates: list[float], params: ExtendParams) -> tuple[list[dict], dict[str, Any]]:
    """The rows the last window trains on, and what went: easy items (pass rate >= ``refilter_easy``),
    then synthetic ones beyond the ``synthetic_keep`` share. Each kept row carries its pass rate."""
    if len(rows) != len(pass_rates):
        raise ValueError(f"{len(rows)} rows but {len(pass_rates)} pass rates")
    kept, easy, synthetic = [], 0, 0
    for row, rate in zip(rows, pass_rates):
        if rate >= params.refilter_easy:
            easy += 1
        elif row["source"] == "synlogic" and kept_share(row["id"]) >= params.synthetic_keep:
            synthetic += 1
        else:
            kept.append({**row, "pass_rate": float(rate)})
    by_task = {}
    for task in sorted({r["task"] for r in rows}):
        by_task[task] = {"before": sum(r["task"] == task for r in rows), "after": sum(r["task"] == task for r in kept)}
    report = {"graded": len(rows), "too_easy": easy, "synthetic_dropped": synthetic, "kept": len(kept),
              "by_task": by_task, "mean_pass_rate": sum(pass_rates) / max(1, len(pass_rates))}
    return kept, report
