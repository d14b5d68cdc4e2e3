"""python -m tasks.curate.rl_data --graded DIR --benchmark PATH --output DIR [--params params.yaml] [--set KEY=VALUE]

The RL dataset (report section 4): every item the difficulty stage kept (``DIR/kept.parquet`` of
``tasks.curate.difficulty``: curated math, calibrated SynLogic, code and other generated items,
each with its pass@k rate), decontaminated against every evaluation set, as one table the RL stage
reads and nothing else:

- ``OUT/mix.parquet``: ``id, task, source, question`` (the prompt), ``answer`` and ``metadata``
  (JSON text; with ``task`` the verifier's spec), ``difficulty``, ``pass_rate``;
- ``OUT/heldout.jsonl``: the evaluation sets, one item a line with its ``family``: for each task the
  difficulty stage graded, ``rl_data.heldout_items`` fresh items at the levels it graded, drawn from
  the held-out tenth of questions (``tasks.envs.heldout``) with ``rl_data.heldout_seed``; and the
  math test set (``--benchmark``) as family ``math_benchmark``. The eval stage scores policies on it;
- ``OUT/rejected.parquet``: RL rows removed as contaminated, with the reason;
- ``OUT/report.json``: counts per family and per source, what decontamination removed;
  ``OUT/mix.png``: RL rows per family by source.

Anchors (``rl_data.family_floor``, not in the report): a template family that pass@k left with
fewer rows than the floor (the policy mastered it) is topped up with its too-easy rows, marked
``metadata.anchor``. Their groups are all correct and dynamic sampling drops them, until the policy
starts failing them: then they pull it back.

Decontamination goes through ``tasks.curate.decontaminate.decontaminate`` with the
``curate.decontaminate`` settings, against the held-out sets, the benchmark and HumanEval. Curated
math is compared as written (n-grams and embeddings: scraped text has paraphrases). A generated item
is an instance of a template whose wording every instance shares (SynLogic's instructions, a code
problem's statement), so generated rows and held-out items are compared by their instance text: the
question without the prefix and suffix common to its template group (task, and ``metadata.family``
where a task has several templates), whole (an n-gram size past any text's length). A repeated
instance is caught; two instances of one template are not taken for copies, though they share
phrases (one 8-gram of an object list flagged 25 of 108 generated rows on the first full run) and
their embeddings are alike whatever their content.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from tasks.config import Params, UsageError, exits_cleanly, load, param, stage_parser
from tasks.curate.decontaminate import DecontaminateParams, decontaminate
from tasks.curate.io import ROW, scan
from tasks.envs.params import EnvParams

MIX_COLUMNS = ("id", "task", "source", "question", "answer", "metadata", "difficulty", "pass_rate")
#: an n-gram size longer than any question: decontaminate then compares each text whole (an exact match)
WHOLE_TEXT = 1_000_000
BENCHMARK_FAMILY = "math_benchmark"


@dataclass
class RLDataParams(Params):
    """``rl_data``: the held-out evaluation sets the RL data is decontaminated against."""

    SECTION: ClassVar[str] = "rl_data"
    heldout_items: int = param(64, ge=1, help="held-out items per task family, spread over its graded levels")
    heldout_seed: int = param(1_000_000, help="seed of the held-out items (arithmetic: seeds >= 1e6 draw from its "
                                              "held-out tenth of operand pairs)")
    benchmark_task: str = param("math", help="the task whose verifier scores the --benchmark items")
    family_floor: int = param(
        2, ge=0, help="anchors: a template family (task, metadata.family) with fewer rows kept than this is topped up "
                      "with its too-easy rows, lowest pass rate first (metadata.anchor = true); RL learns from them only "
                      "once the policy fails some of their samples (dynamic sampling drops all-correct groups), so they "
                      "hold mastered families in place (without them the tiny default's RL, shown only max-subarray "
                      "code rows, wrote that program for every code prompt: LOG.md, issue 11); 0 = the report's band alone")


def family_key(row: dict[str, Any]) -> tuple[str, str]:
    """The template group of an item: its task, and ``metadata.family`` where the task has several."""
    meta = row.get("metadata")
    if isinstance(meta, str):
        meta = json.loads(meta) if meta else {}
    return row["task"], str((meta or {}).get("family", ""))


def anchor_rows(kept: pl.DataFrame, rejected: pl.DataFrame, floor: int) -> pl.DataFrame:
    """Too-easy rows of ``rejected`` that top each template family of the graded pool up to ``floor``
    rows beside ``kept``, lowest pass rate first, with ``metadata.anchor = true`` (``MIX_COLUMNS``)."""
    have: dict[tuple[str, str], int] = {}
    for r in kept.iter_rows(named=True):
        have[family_key(r)] = have.get(family_key(r), 0) + 1
    picked = []
    easy = rejected.filter(pl.col("reason") == "too_easy").sort("pass_rate", "id")
    for r in easy.iter_rows(named=True):
        key = family_key(r)
        if have.get(key, 0) < floor:
            have[key] = have.get(key, 0) + 1
            meta = json.loads(r["metadata"]) if r["metadata"] else {}
            picked.append({**{c: r[c] for c in MIX_COLUMNS}, "metadata": json.dumps({**meta, "anchor": True}, sort_keys=True)})
    return pl.DataFrame(picked, schema=kept.schema) if picked else kept.clear()


def is_anchor(metadata: str | None) -> bool:
    return bool(metadata) and bool(json.loads(metadata).get("anchor"))


def instance_texts(questions: list[str], groups: list[tuple[str, str]]) -> list[str]:
    """Each question without the prefix and suffix that every question of its group shares."""
    members: dict[tuple[str, str], list[str]] = {}
    for q, g in zip(questions, groups):
        members.setdefault(g, []).append(q)
    cut = {}
    for g, qs in members.items():
        prefix = os.path.commonprefix(qs) if len(qs) > 1 else ""
        suffix = os.path.commonprefix([q[::-1] for q in qs])[::-1] if len(qs) > 1 else ""
        cut[g] = (len(prefix), len(suffix))
    out = []
    for q, g in zip(questions, groups):
        lo, hi = cut[g]
        text = q[lo : len(q) - hi] if lo + hi < len(q) else q
        out.append(text.strip() or q)
    return out


def heldout_sets(graded: pl.DataFrame, params: RLDataParams, envs: EnvParams,
                 benchmark: str | Path) -> list[dict[str, Any]]:
    """The evaluation items: per task of ``graded`` (at the levels graded), then the benchmark."""
    from tasks.envs.heldout import is_held_out
    from tasks.envs.registry import get_task

    items: list[dict[str, Any]] = []
    levels_by_task = (graded.filter(pl.col("difficulty").is_not_null()).group_by("task")
                      .agg(pl.col("difficulty").unique().sort()).sort("task"))
    for name, levels in levels_by_task.iter_rows():
        task = get_task(name, envs)
        for i, lv in enumerate(levels):
            want = params.heldout_items // len(levels) + (i < params.heldout_items % len(levels))
            seen: dict[str, dict[str, Any]] = {}
            n = 16 * want
            while len(seen) < want and n <= 4096 * want:  # about one question in ten is held out
                for it in task.generate(n, seed=params.heldout_seed, difficulty=lv):
                    if is_held_out(it["question"]) and it["question"] not in seen and len(seen) < want:
                        seen[it["question"]] = it
                n *= 4
            if len(seen) < want:
                raise UsageError(f"{name} level {lv}: only {len(seen)} distinct held-out questions of {want} wanted; "
                                 "lower rl_data.heldout_items")
            items += [{"family": name, "task": name, **it} for it in seen.values()]
    bench = scan(benchmark).collect()
    items += [{"family": BENCHMARK_FAMILY, "task": params.benchmark_task, "id": str(r.get("id") or f"row{r[ROW]}"),
               "question": r["question"], "answer": r["answer"], "difficulty": None, "metadata": {}}
              for r in bench.iter_rows(named=True)]
    return items


def _decontaminate(rows: pl.DataFrame, texts: list[str], against: list[str], params: DecontaminateParams,
                   out_dir: Path) -> tuple[set[str], dict[str, Any]]:
    """Ids of ``rows`` whose ``texts`` survive ``decontaminate`` against ``against``, and its report."""
    with tempfile.TemporaryDirectory() as tmp:
        src, bench = Path(tmp) / "rows.parquet", Path(tmp) / "heldout.jsonl"
        pl.DataFrame({"id": rows["id"], "question": texts, "answer": rows["answer"]}).write_parquet(src)
        bench.write_text("".join(json.dumps({"id": f"heldout{i}", "question": t}) + "\n" for i, t in enumerate(against)))
        report = decontaminate(src, out_dir, params, benchmarks=[bench])
    kept = set(pl.read_parquet(out_dir / "kept.parquet")["id"].to_list()) if rows.height else set()
    return kept, {k: report[k] for k in ("rows_in", "kept", "rejected", "by_reason", "removed")}


def build(graded_dir: str | Path, benchmark: str | Path, out_dir: str | Path, params: RLDataParams,
          decon: DecontaminateParams, envs: EnvParams) -> dict[str, Any]:
    """Write mix.parquet, heldout.jsonl, rejected.parquet, report.json and mix.png into ``out_dir``."""
    graded_dir, out = Path(graded_dir), Path(out_dir)
    paths = [graded_dir / "kept.parquet", graded_dir / "rejected.parquet"]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such file; run the difficulty stage (tasks.curate.difficulty) first")
    kept = pl.read_parquet(paths[0])
    missing = [c for c in MIX_COLUMNS if c not in kept.columns]
    if missing:
        raise UsageError(f"{paths[0]}: missing column(s) {missing}; expected the difficulty stage's pool columns")
    kept = kept.select(MIX_COLUMNS)
    rejected = pl.read_parquet(paths[1])
    graded = pl.concat([kept.select("task", "difficulty"), rejected.select("task", "difficulty")])
    anchors = anchor_rows(kept, rejected, params.family_floor)
    pool = pl.concat([kept, anchors])
    heldout = heldout_sets(graded, params, envs, benchmark)
    out.mkdir(parents=True, exist_ok=True)

    curated = pool.filter(pl.col("source") == "curated")
    generated = pool.filter(pl.col("source") != "curated")
    gen_held = [h for h in heldout if h["family"] != BENCHMARK_FAMILY]
    groups = [family_key(r) for r in generated.iter_rows(named=True)] + [family_key(h) for h in gen_held]
    inst = instance_texts(generated["question"].to_list() + [h["question"] for h in gen_held], groups)
    survivors, reports = set(), {}
    # the curated rows were decontaminated against HumanEval by the curation stage already
    survivors_c, reports["curated"] = _decontaminate(curated, curated["question"].to_list(), [h["question"] for h in heldout],
                                                     replace(decon, humaneval=False), out / "decontaminate" / "curated")
    survivors_g, reports["generated"] = _decontaminate(generated, inst[: generated.height], inst[generated.height:],
                                                       replace(decon, embedding=False, ngram_sizes=(WHOLE_TEXT,)),
                                                       out / "decontaminate" / "generated")
    survivors = survivors_c | survivors_g
    keep = pl.col("id").is_in(list(survivors))
    mix, removed = pool.filter(keep), pool.filter(~keep).with_columns(reason=pl.lit("contaminated"))
    mix.write_parquet(out / "mix.parquet")
    removed.write_parquet(out / "rejected.parquet")
    with open(out / "heldout.jsonl", "w") as f:
        for item in heldout:
            f.write(json.dumps(item, sort_keys=True) + "\n")

    families = sorted({h["family"] for h in heldout} | set(kept["task"].to_list()))
    per_family = {}
    for fam in families:
        rows = pool.filter(pl.col("task") == fam)
        in_mix = mix.filter(pl.col("task") == fam)
        anchor = pl.Series([is_anchor(m) for m in in_mix["metadata"].to_list()], dtype=pl.Boolean)
        anchored = in_mix.filter(anchor)
        per_family[fam] = {
            "graded_kept": kept.filter(pl.col("task") == fam).height, "contaminated": rows.height - in_mix.height,
            "rl_rows": in_mix.height,
            "anchors": anchored.height,
            "mean_pass_rate": round(float(in_mix["pass_rate"].mean()), 3) if in_mix.height else None,
            "by_source": dict(sorted(in_mix.filter(~anchor).group_by("source").len().iter_rows())),
            "heldout_items": sum(h["family"] == fam for h in heldout),
        }
    report = {"rl_rows": mix.height, "anchors": anchors.height, "contaminated": removed.height, "heldout_items": len(heldout),
              "by_family": per_family, "by_source": dict(sorted(mix.group_by("source").len().iter_rows())),
              "decontamination": reports}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    plot_mix(per_family, out / "mix.png")
    return report


def write_generated(out_dir: str | Path, tasks: dict[str, int], items: int, *, seed: int = 0,
                    heldout_items: int = 16, heldout_seed: int = 1_000_000) -> Path:
    """An RL data folder straight from task generators, without grading or decontamination: ``items``
    items of each task at its level (``tasks``: name -> level), held-out questions left out, and
    ``heldout_items`` held-out items each (pass rates unknown: null). For benchmarks and tests that
    train RL on chosen tasks; the pipeline's RL data comes from ``build``."""
    from tasks.envs.heldout import is_held_out
    from tasks.envs.registry import get_task

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, held = [], []
    for name, level in tasks.items():
        task = get_task(name)
        rows += [{"id": str(it["id"]), "task": name, "source": "generated", "question": it["question"],
                  "answer": str(it["answer"]), "metadata": json.dumps(it["metadata"], sort_keys=True),
                  "difficulty": level, "pass_rate": None}
                 for it in task.generate(items, seed, level) if not is_held_out(it["question"])]
        found = [it for it in task.generate(20 * heldout_items, heldout_seed, level) if is_held_out(it["question"])]
        held += [{"family": name, "task": name, **it} for it in found[:heldout_items]]
    pl.DataFrame(rows, schema={c: (pl.Int64 if c == "difficulty" else pl.Float64 if c == "pass_rate" else pl.String)
                               for c in MIX_COLUMNS}).write_parquet(out / "mix.parquet")
    (out / "heldout.jsonl").write_text("".join(json.dumps(h, sort_keys=True) + "\n" for h in held))
    return out


def plot_mix(per_family: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Bars: RL rows per family, stacked by source, then the anchors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [f for f, c in per_family.items() if c["rl_rows"]]
    sources = sorted({s for f in names for s in per_family[f]["by_source"]})
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 3.6))
    bottom = np.zeros(len(names))
    for source in sources:
        values = np.array([per_family[f]["by_source"].get(source, 0) for f in names])
        ax.bar(names, values, bottom=bottom, label=source)
        bottom += values
    anchors = np.array([per_family[f]["anchors"] for f in names])
    if anchors.any():
        ax.bar(names, anchors, bottom=bottom, label="anchor (too easy)", color="0.8", hatch="//")
    ax.set_ylabel("RL rows")
    ax.set_title("the RL mix after decontamination")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=40, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


PARAMS = {"rl_data": RLDataParams, "curate.decontaminate": DecontaminateParams, "envs": EnvParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, {"graded": "the difficulty stage's output folder (kept.parquet, rejected.parquet)",
                                "benchmark": "the math test set (JSONL with question and answer)"},
                      prog="python -m tasks.curate.rl_data")
    args = ap.parse_args(argv)
    loaded = load(args.params, PARAMS, args.set)
    report = build(args.graded, args.benchmark, args.output, loaded["rl_data"], loaded["curate.decontaminate"],
                   loaded["envs"])
    for fam, c in report["by_family"].items():
        print(f"{fam:>22}: {c['rl_rows']:4d} RL rows ({c['anchors']} anchors, {c['contaminated']} contaminated), "
              f"{c['heldout_items']} held out")
    print(f"{report['rl_rows']} RL rows, {report['heldout_items']} held-out items -> {args.output}")


if __name__ == "__main__":
    main()
