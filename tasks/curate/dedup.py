"""python -m tasks.curate.dedup --input PATH --sft SFT_PATH --output DIR [--params params.yaml] [--set KEY=VALUE]

Stage 2 (report section 4.1): "embedding-based deduplication across the RL data sources" and "a strict
separation from the SFT dataset to avoid any overlap". Three detectors over the ``question`` text,
across all sources at once (the first occurrence in input order is kept):

- exact: equal ``dedup_key`` (case, spacing, final punctuation ignored) -> ``duplicate_exact``;
- near: MinHash LSH over word ``shingle_size``-grams, pairs verified at estimated Jaccard
  >= ``near_threshold``, duplicates are connected components -> ``duplicate_near``;
- semantic (SemDeDup, Abbas et al. 2023): all-MiniLM-L6-v2 embeddings, spherical k-means into
  clusters of about ``cluster_size``, and inside a cluster an item is dropped when an earlier item
  has cosine >= ``semantic_threshold`` -> ``duplicate_semantic``.

With ``same_numbers`` (default) a near pair must also hold the same numbers in the same order, and a
semantic pair the same numbers in any order (a paraphrase may reorder them): sentence embeddings and
word shingles barely see digits, and "2x+3=7" vs "2x+5=9" is a different problem, not a duplicate.

With ``--sft`` the SFT set's questions come first in every detector, and an RL row that matches one
is rejected as ``sft_exact`` / ``sft_near`` / ``sft_semantic`` even if it is the only RL copy.
``DIR/duplicates.parquet`` lists each rejected row (input row number) with the row it duplicates
(``dup_of_sft`` when that is an SFT item).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
from tqdm import tqdm

from tasks.config import Params, exits_cleanly, load, param, stage_parser
from tasks.curate.io import INPUT_HELP, ROW, StageWriter, batches, read_texts, scan
from tasks.curate.minhash import (
    MinHasher,
    components,
    dedup_key,
    lsh_params,
    near_duplicate_pairs,
    number_keys,
    shingles,
)

@dataclass
class DedupParams(Params):
    """``curate.dedup``: which detectors run and their thresholds."""

    SECTION: ClassVar[str] = "curate.dedup"
    exact: bool = param(True, help="reject equal normalised question text")
    near: bool = param(True, help="reject MinHash-LSH near duplicates")
    semantic: bool = param(True, help="reject SemDeDup embedding duplicates (all-MiniLM-L6-v2; about 150 rows/s "
                                      "on one CPU core)")
    shingle_size: int = param(2, ge=1, help="word n-gram size of the MinHash shingles (short questions: 2 beats 3)")
    num_perm: int = param(64, ge=1, help="MinHash permutations; LSH bands x rows are chosen for near_threshold")
    near_threshold: float = param(0.5, gt=0.0, le=1.0, help="estimated Jaccard of shingle sets (safe this low only "
                                                            "with same_numbers)")
    semantic_threshold: float = param(0.7, gt=0.0, le=1.0, help="cosine; synthetic paraphrases measured 0.68-0.95 "
                                                                "(median 0.85)")
    same_numbers: bool = param(True, help="a near pair must hold the same numbers in order, a semantic pair in any "
                                          "order")
    cluster_size: int = param(1000, ge=1, help="SemDeDup: k-means clusters of about this many rows")
    kmeans_iters: int = param(10, ge=1, help="SemDeDup: k-means iterations")
    embed_batch_size: int = param(64, ge=1, help="sentences per embedding call")
    seed: int = param(1, help="MinHash permutations and k-means initialisation")
    chunk_size: int = param(65536, ge=1, help="rows per streamed batch (a memory bound, not a result knob)")
REF_COLUMNS = ("question", "prompt", "problem")


def spherical_kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> np.ndarray:
    """[N] cluster labels of unit vectors ``x`` [N, D] under cosine k-means (random init from the data)."""
    n = x.shape[0]
    if k <= 1 or n <= k:
        return np.zeros(n, np.int64) if k <= 1 else np.arange(n)
    rng = np.random.default_rng(seed)
    cent = x[rng.choice(n, k, replace=False)].copy()  # [K, D]
    label = np.zeros(n, np.int64)
    for _ in range(iters):
        label = np.concatenate([(x[lo : lo + 65536] @ cent.T).argmax(1) for lo in range(0, n, 65536)])
        sums = np.zeros_like(cent)
        np.add.at(sums, label, x)
        norm = np.linalg.norm(sums, axis=1, keepdims=True)
        cent = np.where(norm > 0, sums / np.maximum(norm, 1e-12), cent)
    return label


def semdedup(
    emb: np.ndarray,
    num_key: np.ndarray | None,
    threshold: float,
    cluster_size: int = 1000,
    iters: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """For each row of ``emb`` (in priority order), the earliest row in its cluster it duplicates, or -1."""
    n = emb.shape[0]
    dup_of = np.full(n, -1, np.int64)
    label = spherical_kmeans(emb, max(1, math.ceil(n / cluster_size)), iters, seed)
    order = np.argsort(label, kind="stable")
    starts = np.flatnonzero(np.r_[True, label[order][1:] != label[order][:-1]]) if n else []
    for s, e in zip(starts, np.r_[starts[1:], n] if n else []):
        members = order[s:e]  # ascending row order inside the cluster (stable sort)
        if members.size < 2:
            continue
        sim = emb[members] @ emb[members].T  # [m, m]
        sim[np.triu_indices(members.size)] = -1.0  # only earlier rows count
        if num_key is not None:
            sim[num_key[members][:, None] != num_key[members][None, :]] = -1.0
        best = sim.argmax(1)
        hit = sim[np.arange(members.size), best] >= threshold
        dup_of[members[hit]] = members[best[hit]]
    return dup_of


def dedup(input_path: str | Path, output_dir: str | Path, params: DedupParams, *,
          sft_path: str | Path | None = None) -> dict[str, Any]:
    """Reject exact, near and semantic duplicates (and SFT overlap) of ``input_path``'s questions."""
    lf = scan(input_path)
    writer = StageWriter(output_dir, "dedup", input_path)
    bands, rows = lsh_params(params.near_threshold, params.num_perm)
    hasher = MinHasher(params.num_perm, params.seed)
    ref_texts = read_texts(sft_path, REF_COLUMNS)[0] if sft_path else []
    r = len(ref_texts)
    timing: dict[str, float] = {}

    def keys_and_sigs(texts: pl.Series) -> tuple[np.ndarray, np.ndarray | None]:
        if params.near and params.same_numbers:
            nums.append(number_keys(texts, ordered=True))
        norm = pl.DataFrame({"q": texts}).select(dedup_key(pl.col("q"))).to_series()
        t = time.perf_counter()
        h = norm.hash(seed=11).to_numpy().copy()
        h[norm.str.len_chars().to_numpy() == 0] = 0  # every empty text is its own row, never a duplicate
        timing["exact"] = timing.get("exact", 0.0) + time.perf_counter() - t
        if not params.near:
            return h, None
        t = time.perf_counter()
        doc, sh = shingles(norm, params.shingle_size)
        sig = hasher.signatures(doc, sh, len(norm))
        timing["minhash"] = timing.get("minhash", 0.0) + time.perf_counter() - t
        return h, sig

    nums: list[np.ndarray] = []
    ref_h, ref_sig = keys_and_sigs(pl.Series(ref_texts, dtype=pl.String))
    hs, sigs, questions, sources = [ref_h], [ref_sig], [], []
    has_source = "source" in lf.collect_schema()
    for df in tqdm(batches(lf.select(ROW, "question", *(["source"] if has_source else [])), params.chunk_size, input_path),
                   desc="dedup: hash", unit="batch"):
        h, sig = keys_and_sigs(df["question"])
        hs.append(h)
        sigs.append(sig)
        if params.semantic:
            questions.extend(df["question"].fill_null("").to_list())
        if has_source:
            sources.extend(df["source"].cast(pl.String).to_list())
    key = np.concatenate(hs)
    total = key.size  # r SFT items, then the input rows
    reason = np.full(total, None, object)
    dup_of = np.full(total, -1, np.int64)

    def mark(rows_: np.ndarray, of: np.ndarray, what: str) -> None:
        """Reject rows (global index, input rows only, not yet rejected) as duplicates of ``of``."""
        sel = (rows_ >= r) & (reason[rows_] == None)  # noqa: E711  (object array)
        rows_, of = rows_[sel], of[sel]
        reason[rows_] = np.where(of < r, f"sft_{what}", f"duplicate_{what}")
        dup_of[rows_] = of

    if params.exact:
        t = time.perf_counter()
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        first_of = first[inv]
        cand = np.flatnonzero((first_of != np.arange(total)) & (key != 0))
        mark(cand, first_of[cand], "exact")
        timing["exact"] += time.perf_counter() - t
    if params.near:
        t = time.perf_counter()
        sig = np.concatenate(sigs)
        a, b = near_duplicate_pairs(sig, bands, rows, params.near_threshold)
        del sig
        if params.same_numbers:
            nk = np.concatenate(nums)
            a, b = a[nk[a] == nk[b]], b[nk[a] == nk[b]]
        root = components(total, a, b)
        cand = np.flatnonzero(root != np.arange(total))
        mark(cand, root[cand], "near")
        timing["minhash"] += time.perf_counter() - t
    if params.semantic:
        from tasks.curate.embed import embed, load_encoder

        load_encoder()
        t = time.perf_counter()
        # SFT items and rows no other detector took; an empty question is nobody's duplicate
        alive = np.flatnonzero((reason == None) & (key != 0))  # noqa: E711  (object array)
        texts = [ref_texts[i] if i < r else questions[i - r] for i in alive]
        emb = embed(texts, batch_size=params.embed_batch_size, progress=True)
        timing["embed"] = time.perf_counter() - t
        nk = number_keys(pl.Series(texts, dtype=pl.String), ordered=False) if params.same_numbers else None
        local = semdedup(emb, nk, params.semantic_threshold, params.cluster_size, params.kmeans_iters, params.seed)
        hit = np.flatnonzero(local >= 0)
        mark(alive[hit], alive[local[hit]], "semantic")
        timing["semantic"] = time.perf_counter() - t
        timing["embed_rows_per_s"] = len(texts) / timing["embed"] if texts else 0.0

    template = None
    in_reason = reason[r:]
    for df in tqdm(batches(lf, params.chunk_size, input_path), desc="dedup: write", unit="batch"):
        writer.write(df, list(in_reason[df[ROW].to_numpy()]))
        template = df if template is None else template
    rej = np.flatnonzero(dup_of[r:] >= 0)
    of = dup_of[r:][rej]
    pl.DataFrame({
        "row": rej,
        "reason": list(in_reason[rej]),
        "dup_of_row": np.where(of >= r, of - r, -1),
        "dup_of_sft": np.where(of < r, of, -1),
    }, schema={"row": pl.Int64, "reason": pl.String, "dup_of_row": pl.Int64, "dup_of_sft": pl.Int64}).write_parquet(
        Path(output_dir) / "duplicates.parquet"
    )
    cross = 0
    if has_source and rej.size:
        src = np.asarray(sources, dtype=object)
        within = of >= r
        cross = int((src[rej[within]] != src[of[within] - r]).sum())
    return writer.close(
        (template if template is not None else lf.head(0).collect()).drop(ROW),
        sft_items=r,
        lsh={"bands": bands, "rows": rows, "num_perm": params.num_perm, "threshold": params.near_threshold},
        cross_source_duplicates=cross,
        seconds_by_detector={k: round(v, 3) for k, v in timing.items()},
    )


PARAMS = {"curate.dedup": DedupParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, {"input": INPUT_HELP, "sft": "SFT set (JSONL/Parquet/CSV, question column) to keep "
                                  "RL data apart from"}, prog="python -m tasks.curate.dedup").parse_args(argv)
    params = load(args.params, PARAMS, args.set)["curate.dedup"]
    report = dedup(args.input, args.output, params, sft_path=args.sft)
    print({k: report[k] for k in ("rows_in", "kept", "rejected", "by_reason", "rows_per_s")})


if __name__ == "__main__":
    main()
