"""python -m tasks.curate.evaluate --output DIR [--set raw_math.n_base=1200] [--markdown FILE]

Precision and recall of every curation filter on the labelled messy corpus of ``tasks.curate.synth``:
generates the corpus, runs clean -> dedup (with the corpus's SFT set) -> decontaminate (with its
benchmark file and HumanEval) -> questions with the params.yaml settings, and prints a table.

For a filter, precision = rows it rejected that carry its label / rows it rejected, and recall = rows
carrying its label that it rejected / rows carrying its label in the whole corpus (so a row another
stage took first counts as a miss). Rewrites (raw documents, worked solutions, multiple choice) are
scored by accuracy: kept with exactly the expected answer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import polars as pl

from tasks.config import exits_cleanly, load
from tasks.curate import synth
from tasks.curate.clean import CleanParams, clean
from tasks.curate.decontaminate import DecontaminateParams, decontaminate
from tasks.curate.dedup import DedupParams, dedup
from tasks.curate.questions import QuestionsParams, questions
from tasks.curate.synth import RawMathParams

PARAMS = {"raw_math": RawMathParams, "curate.clean": CleanParams, "curate.dedup": DedupParams,
          "curate.decontaminate": DecontaminateParams, "curate.questions": QuestionsParams}

CLEAN_REASONS = ["empty_question", "empty_answer", "short_question", "truncated_question", "truncated_answer",
                 "mojibake", "unbalanced_dollar", "unbalanced_braces", "unbalanced_code_fence"]
KEEP_LABELS = {"clean", "raw", "solution", "mc"}
# (filter, reasons it rejects with, labels it should catch)
FILTERS = [
    ("clean: malformed", CLEAN_REASONS, ["malformed"]),
    ("dedup: exact", ["duplicate_exact"], ["dup_exact"]),
    ("dedup: near (MinHash)", ["duplicate_near"], ["dup_near"]),
    ("dedup: semantic (SemDeDup)", ["duplicate_semantic"], ["dup_paraphrase"]),
    ("dedup: all three", ["duplicate_exact", "duplicate_near", "duplicate_semantic"], ["dup_exact", "dup_near", "dup_paraphrase"]),
    ("dedup: SFT separation", ["sft_exact", "sft_near", "sft_semantic"], ["sft_overlap"]),
    ("decontaminate: n-gram", ["ngram_overlap"], ["contaminated"]),
    ("decontaminate: embedding", ["embedding_similarity"], ["contaminated"]),
    ("decontaminate: both", ["ngram_overlap", "embedding_similarity"], ["contaminated"]),
    ("questions: binary", ["binary"], ["binary"]),
    ("questions: proof", ["proof"], ["proof"]),
    ("questions: multi-part", ["multi_part"], ["multi_part"]),
    ("questions: unparseable answer", ["unparseable_answer"], ["unparseable"]),
]


def run_pipeline(paths: dict[str, Path], out: Path, params: dict) -> pl.DataFrame:
    """Run the four stages; one frame of every corpus row with its final ``stage``/``reason`` (null = kept)."""
    clean(paths["corpus"], out / "clean", params["curate.clean"])
    dedup(out / "clean" / "kept.parquet", out / "dedup", params["curate.dedup"], sft_path=paths["sft"])
    decontaminate(out / "dedup" / "kept.parquet", out / "decontaminate", params["curate.decontaminate"],
                  benchmarks=[paths["benchmark"]])
    questions(out / "decontaminate" / "kept.parquet", out / "questions", params["curate.questions"])
    parts = [pl.read_parquet(out / s / "rejected.parquet") for s in ("clean", "dedup", "decontaminate", "questions")]
    kept = pl.read_parquet(out / "questions" / "kept.parquet").with_columns(
        pl.lit(None, pl.String).alias("stage"), pl.lit(None, pl.String).alias("reason"))
    return pl.concat([*parts, kept], how="diagonal_relaxed")


def score(result: pl.DataFrame, corpus: pl.DataFrame, clean_kept: pl.DataFrame) -> list[dict[str, Any]]:
    """One row per filter and per rewrite: flagged, true positives, positives, precision, recall."""
    assert result.height == corpus.height and result["id"].n_unique() == corpus.height, "rows lost or duplicated"
    res = result.select("id", "reason", pl.col("answer").alias("final_answer")).join(
        corpus.select("id", "label", "expect_answer"), on="id")
    table = []
    for name, reasons, labels in FILTERS:
        flagged = res.filter(pl.col("reason").is_in(reasons))
        tp = flagged.filter(pl.col("label").is_in(labels)).height
        pos = res.filter(pl.col("label").is_in(labels)).height
        table.append({"filter": name, "flagged": flagged.height, "true_pos": tp, "positives": pos,
                      "precision": tp / flagged.height if flagged.height else float("nan"),
                      "recall": tp / pos if pos else float("nan")})
    extracted = clean_kept.select("id", "answer").join(corpus.select("id", "label", "expect_answer"), on="id")
    for name, label, frame, col in (("clean: raw-document extraction", "raw", extracted, "answer"),
                                    ("clean: final answer of a worked solution", "solution", extracted, "answer"),
                                    ("questions: multiple choice rewritten", "mc", res.filter(pl.col("reason").is_null()), "final_answer")):
        pos = corpus.filter(pl.col("label") == label).height
        ok = frame.filter((pl.col("label") == label) & (pl.col(col) == pl.col("expect_answer"))).height
        table.append({"filter": name, "flagged": None, "true_pos": ok, "positives": pos, "precision": None,
                      "recall": ok / pos if pos else float("nan")})
    keep = res.filter(pl.col("label").is_in(list(KEEP_LABELS)))
    drop = res.filter(~pl.col("label").is_in(list(KEEP_LABELS)))
    final = res.filter(pl.col("reason").is_null())
    table.append({"filter": "pipeline: rows that should stay, kept", "flagged": None,
                  "true_pos": keep.filter(pl.col("reason").is_null()).height, "positives": keep.height,
                  "precision": final.filter(pl.col("label").is_in(list(KEEP_LABELS))).height / max(final.height, 1),
                  "recall": keep.filter(pl.col("reason").is_null()).height / max(keep.height, 1)})
    table.append({"filter": "pipeline: rows that should go, rejected", "flagged": None,
                  "true_pos": drop.filter(pl.col("reason").is_not_null()).height, "positives": drop.height,
                  "precision": None, "recall": drop.filter(pl.col("reason").is_not_null()).height / max(drop.height, 1)})
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    fmt = lambda x: "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)  # noqa: E731
    lines = ["| filter | flagged | true pos | labelled | precision | recall / accuracy |", "|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['filter']} | {fmt(r['flagged'])} | {r['true_pos']} | {r['positives']} | "
                     f"{fmt(r['precision'])} | {fmt(r['recall'])} |")
    return "\n".join(lines)


def evaluate(output_dir: str | Path, params: dict) -> list[dict[str, Any]]:
    """Generate the corpus into ``output_dir``, run the stages there and return the scored table."""
    out = Path(output_dir)
    paths = synth.write(out / "corpus", params["raw_math"])
    result = run_pipeline(paths, out, params)
    corpus = pl.read_ndjson(paths["corpus"], infer_schema_length=None)
    return score(result, corpus, pl.read_parquet(out / "clean" / "kept.parquet"))


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tasks.curate.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--output", required=True, help="working directory (corpus and every stage's outputs)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting, e.g. raw_math.n_base=1200 (the committed table's corpus)")
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    args = ap.parse_args(argv)
    params = load(args.params, PARAMS, args.set)
    t = time.perf_counter()
    table = evaluate(args.output, params)
    text = markdown(table)
    print(text)
    raw = params["raw_math"]
    print(f"\n{time.perf_counter() - t:.0f} s, n_base={raw.n_base}, seed={raw.seed}")
    if args.markdown:
        Path(args.markdown).write_text(
            f"Filter quality on the synthetic labelled corpus (`python -m tasks.curate.evaluate --output DIR "
            f"--set raw_math.n_base={raw.n_base} --set raw_math.seed={raw.seed}`), params.yaml otherwise.\n\n{text}\n")


if __name__ == "__main__":
    main()
