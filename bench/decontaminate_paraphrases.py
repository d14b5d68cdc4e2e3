"""python -m bench.decontaminate_paraphrases --output bench/results/decontaminate_paraphrases.md

Precision and recall of the decontamination stage (``tasks.curate.decontaminate``) on a labelled
set written by hand, not by the corpus generator (``tests/data/decontamination/``): paraphrases of
HumanEval prompts and of synthetic test items (same problem, other words, no shared 8-gram for the
HumanEval ones), sibling problems with other numbers (must be kept), and unrelated questions,
some on a benchmark item's topic. The benchmark is HumanEval plus the 15 synthetic items of
``benchmark.jsonl``.

First a sweep over the number gate (``numbers``), the benchmark views (the whole item, or also
its docstring's prose) and the cosine threshold, from one embedding pass; then the stage itself,
``decontaminate()`` with the shipped params, on the same rows, listing what it misses and what it
flags wrongly. The threshold was chosen on this set; nothing here is held out (the synthetic
corpus of ``python -m tasks.curate.evaluate`` is the check on other rows).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from tasks.curate.decontaminate import (BenchmarkEmbeddings, DecontaminateParams, NgramIndex, decontaminate,
                                        load_benchmarks, numbers, numbers_allow)
from tasks.curate.embed import embed
from tasks.curate.minhash import dedup_key

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "decontamination"
THRESHOLDS = [0.55, 0.6, 0.65, 0.7, 0.72, 0.75, 0.8, 0.85, 0.9]


def load_set() -> tuple[pl.DataFrame, Path]:
    """The labelled rows (id, question, label, of) and the synthetic benchmark file."""
    rows = pl.read_ndjson(DATA / "labelled.jsonl", infer_schema_length=None)
    return rows, DATA / "benchmark.jsonl"


def metrics(flag: np.ndarray, label: np.ndarray, humaneval: np.ndarray) -> dict[str, float]:
    """Paraphrase recall (all, HumanEval, synthetic) and precision; share of siblings and unrelated flagged."""
    para = label == "paraphrase"
    return {
        "recall": flag[para].mean(),
        "recall_he": flag[para & humaneval].mean(),
        "recall_synth": flag[para & ~humaneval].mean(),
        "precision": flag[para].sum() / max(flag.sum(), 1),
        "siblings_flagged": flag[label == "sibling"].mean(),
        "unrelated_flagged": flag[label == "unrelated"].mean(),
    }


def sweep(rows: pl.DataFrame, bench_file: Path, batch_size: int) -> tuple[list[tuple[str, str, float, dict]], list[str]]:
    """The metrics of every (number rule, views, threshold), and for each row its closest item under
    the shipped rule and views, as "item cosine"."""
    bench = load_benchmarks([bench_file], humaneval=True)
    texts, questions = bench["text"].to_list(), rows["question"].to_list()
    item, _, _ = NgramIndex(bench["text"], [13, 8]).match(rows.select(dedup_key(pl.col("question"))).to_series())
    emb = embed(questions, batch_size=batch_size)
    views = BenchmarkEmbeddings(texts, batch_size)
    sims = {"whole": emb @ views.whole.T, "whole + prose": views.similarity(emb)}
    row_nums, bench_nums = numbers(questions), numbers(texts)
    label = rows["label"].to_numpy()
    humaneval = rows["of"].str.starts_with("HumanEval").to_numpy()
    out, closest = [], []
    for rule in ("equal", "subset", "ignore"):
        gate = np.array([[numbers_allow(r, b, rule) for b in bench_nums] for r in row_nums])  # [N, B]
        ngram = np.array([i >= 0 and gate[k, i] for k, i in enumerate(item)])
        for view, sim in sims.items():
            best = np.where(gate, sim, -1.0).max(1)
            if (rule, view) == (DecontaminateParams().numbers, "whole + prose"):
                arg = np.where(gate, sim, -1.0).argmax(1)
                closest = [f"{bench['item_id'][int(j)]} {b:.3f}" for j, b in zip(arg, best)]
            for t in THRESHOLDS:
                out.append((rule, view, t, metrics(ngram | (best >= t), label, humaneval)))
    return out, closest


def stage(rows: pl.DataFrame, bench_file: Path, params: DecontaminateParams) -> tuple[dict, pl.DataFrame]:
    """``decontaminate()`` on the labelled rows: its report and each row's reason joined to the labels."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "rows.parquet"
        rows.with_columns(pl.lit("x").alias("answer")).write_parquet(src)
        report = decontaminate(src, Path(tmp) / "out", params, benchmarks=[bench_file])
        out = pl.concat([pl.read_parquet(Path(tmp) / "out" / "kept.parquet").with_columns(pl.lit(None, pl.String).alias("reason")),
                         pl.read_parquet(Path(tmp) / "out" / "rejected.parquet").select(rows.columns + ["answer", "reason"])],
                        how="diagonal")
    matched = {r["id"]: (r["benchmark_id"], r["score"]) for r in report["removed"]}
    out = out.with_columns(pl.col("id").map_elements(lambda i: matched.get(i, ("", None))[0], pl.String).alias("matched"),
                           pl.col("id").map_elements(lambda i: matched.get(i, ("", None))[1], pl.Float64).alias("score"))
    return report, rows.select("id").join(out, on="id", how="left")


def table(results: list[tuple[str, str, float, dict]]) -> list[str]:
    lines = ["| numbers | benchmark views | threshold | paraphrase recall (HumanEval / synthetic) | precision | "
             "siblings flagged | unrelated flagged |", "|---|---|---|---|---|---|---|"]
    for rule, view, t, m in results:
        lines.append(f"| {rule} | {view} | {t:.2f} | {m['recall']:.3f} ({m['recall_he']:.3f} / {m['recall_synth']:.3f}) | "
                     f"{m['precision']:.3f} | {m['siblings_flagged']:.3f} | {m['unrelated_flagged']:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="python -m bench.decontaminate_paraphrases")
    ap.add_argument("--output", type=Path, help="markdown file for the tables")
    args = ap.parse_args(argv)
    rows, bench_file = load_set()
    params = DecontaminateParams()
    counts = dict(rows.group_by("label").len().iter_rows())
    humaneval_paraphrases = rows.filter((pl.col("label") == "paraphrase") & pl.col("of").str.starts_with("HumanEval")).height
    results, closest = sweep(rows, bench_file, params.embed_batch_size)
    unrelated = sorted(((float(c.split()[1]), i, c) for i, c, lab in zip(rows["id"], closest, rows["label"])
                        if lab == "unrelated"), reverse=True)[:3]
    report, got = stage(rows, bench_file, params)
    flag = got["reason"].is_not_null().to_numpy()
    m = metrics(flag, got["label"].to_numpy(), got["of"].str.starts_with("HumanEval").to_numpy())
    para = got.filter(pl.col("label") == "paraphrase")
    right_item = para.filter(pl.col("reason").is_not_null() & (pl.col("matched") == pl.col("of"))).height
    shown = lambda df: ", ".join(f"{r['id']} ({r['matched'] or '-'} {r['score'] or ''})".replace(" )", ")")  # noqa: E731
                                 for r in df.iter_rows(named=True)) or "none"
    lines = [
        f"Labelled set: {counts.get('paraphrase', 0)} paraphrases ({humaneval_paraphrases} of HumanEval prompts, "
        f"the rest of synthetic items), {counts.get('sibling', 0)} siblings with other numbers, "
        f"{counts.get('unrelated', 0)} unrelated questions (tests/data/decontamination/, written by hand). Benchmark: "
        f"HumanEval (164) + 15 synthetic items. all-MiniLM-L6-v2.",
        "",
        f"## The stage with the shipped params (numbers: {params.numbers}, embedding_threshold: "
        f"{params.embedding_threshold}, n-gram sizes {list(params.ngram_sizes)})",
        "",
        "| | value |",
        "|---|---|",
        f"| paraphrase recall | {m['recall']:.3f} ({int(flag[got['label'].to_numpy() == 'paraphrase'].sum())} of "
        f"{counts.get('paraphrase', 0)}; HumanEval {m['recall_he']:.3f}, synthetic {m['recall_synth']:.3f}) |",
        f"| paraphrase precision | {m['precision']:.3f} |",
        f"| paraphrases matched to their own item | {right_item} |",
        f"| siblings flagged (should be 0) | {m['siblings_flagged']:.3f} ({int(flag[got['label'].to_numpy() == 'sibling'].sum())}"
        f" of {counts.get('sibling', 0)}); siblings kept: {1 - m['siblings_flagged']:.3f} |",
        f"| unrelated flagged (should be 0) | {m['unrelated_flagged']:.3f} |",
        f"| by reason | {report['by_reason']} |",
        "",
        f"Missed paraphrases: {shown(para.filter(pl.col('reason').is_null()))}.",
        "",
        f"Wrongly flagged: {shown(got.filter((pl.col('label') != 'paraphrase') & pl.col('reason').is_not_null()))}.",
        "",
        "Closest unrelated questions (item, cosine; the margin under the threshold): "
        + ", ".join(f"{i} ({c})" for _, i, c in unrelated) + ".",
        "",
        "## Sweep (n-gram matches gated by the same number rule)",
        "",
        *table(results),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
