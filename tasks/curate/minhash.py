"""Text keys, word n-gram shingles and numpy-vectorised MinHash LSH, shared by dedup and decontamination.

Texts are compared after ``dedup_key``: lower case, whitespace collapsed and removed around symbols,
trailing sentence punctuation dropped. Symbols and digits stay, so ``2x+3=7`` and ``2x-3=7`` differ.
Tokens are runs of letters, runs of digits, or single symbols; a shingle is ``n`` consecutive tokens
hashed to 64 bits (a text shorter than ``n`` tokens is one shingle of all its tokens).

MinHash uses multiply-add-shift hashing on 32-bit keys, ``h_i(x) = ((a_i x + b_i) mod 2^64) >> 32``,
one (a_i, b_i) per permutation; LSH splits the signature into ``bands`` of ``rows`` and buckets rows
whose band agrees. Candidates are verified by their estimated Jaccard similarity (the fraction of
equal signature entries) before they count.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

TOKEN_RE = r"\p{L}+|\p{N}+|[^\s\p{L}\p{N}]"
_MIX = np.uint64(0x9E3779B97F4A7C15)


def dedup_key(expr: pl.Expr) -> pl.Expr:
    """The normalised text two exact duplicates share (case, spacing and final punctuation ignored)."""
    return (
        expr.fill_null("")
        .str.to_lowercase()
        .str.replace_all(r"\s+", " ")
        .str.replace_all(r" ?([^\p{L}\p{N} ]) ?", "$1")
        .str.strip_chars(" .?!")
    )


def number_keys(texts: pl.Series, ordered: bool) -> np.ndarray:
    """[N] uint64 hash of the numbers in each text, in order or as a sorted multiset ("" when none)."""
    nums = texts.fill_null("").str.extract_all(r"\d+(?:\.\d+)?")
    return (nums if ordered else nums.list.sort()).list.join(" ").hash(seed=3).to_numpy()


def shingles(texts: pl.Series, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Word n-gram hashes of already-normalised ``texts``: (doc index [S] int64, hash [S] uint64).

    Every text with at least one token has at least one shingle; an empty text has none.
    """
    toks = pl.DataFrame({"t": texts.fill_null("").str.extract_all(TOKEN_RE)}).with_row_index("d")
    flat = toks.explode("t").drop_nulls("t")
    if flat.height == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    doc = flat["d"].to_numpy().astype(np.int64)
    h = flat["t"].hash(seed=7).to_numpy()  # [T] uint64, one per token
    starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
    lengths = np.diff(np.r_[starts, doc.size])
    # position of each token inside its doc, so a window never crosses docs
    pos = np.arange(doc.size) - np.repeat(starts, lengths)
    with np.errstate(over="ignore"):
        if doc.size >= n:
            g = np.zeros(doc.size - n + 1, np.uint64)
            for k in range(n):  # g = sum_k h[i+k] * (MIX^(k+1)), wrapping: order-sensitive
                g = g * _MIX + h[k : doc.size - n + 1 + k]
            valid = pos[: doc.size - n + 1] + n <= np.repeat(lengths, lengths)[: doc.size - n + 1]
            win_doc, win_hash = doc[: doc.size - n + 1][valid], g[valid]
        else:
            win_doc, win_hash = np.zeros(0, np.int64), np.zeros(0, np.uint64)
        short = lengths < n  # docs with fewer than n tokens: one shingle of the whole text
        if short.any():
            sel = np.repeat(short, lengths)
            sd, sh, sp = doc[sel], h[sel], pos[sel]
            run_starts = np.flatnonzero(sp == 0)
            run = np.repeat(np.arange(run_starts.size), np.diff(np.r_[run_starts, sd.size]))
            acc = np.zeros(run_starts.size, np.uint64)
            # each run has at most one token at position k, and none past the longest short text (n may
            # be huge: a whole text as one shingle)
            for k in range(min(n - 1, int(lengths[short].max()))):
                at = sp == k
                acc[run[at]] = acc[run[at]] * _MIX + sh[at]
            win_doc = np.concatenate([win_doc, sd[run_starts]])
            win_hash = np.concatenate([win_hash, acc])
    order = np.argsort(win_doc, kind="stable")
    return win_doc[order], win_hash[order]


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising false positives + false negatives at ``threshold``.

    The probability that a pair of Jaccard s collides in some band is 1 - (1 - s^r)^b; the errors are the
    integrals of that curve below the threshold and of its complement above it (the datasketch rule).
    """
    s = np.linspace(0.0, 1.0, 201)
    best, best_err = (1, num_perm), math.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - s**r) ** b
            fp = np.trapezoid(np.where(s < threshold, p, 0.0), s)
            fn = np.trapezoid(np.where(s >= threshold, 1.0 - p, 0.0), s)
            if fp + fn < best_err:
                best, best_err = (b, r), fp + fn
    return best


class MinHasher:
    """Signatures of shingle sets; ``num_perm`` 32-bit hash functions drawn from ``seed``."""

    def __init__(self, num_perm: int, seed: int):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self.b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)

    def signatures(self, doc: np.ndarray, h: np.ndarray, n_docs: int, chunk: int = 1 << 18) -> np.ndarray:
        """[n_docs, num_perm] uint32 minima; a doc without shingles gets all 0xFFFFFFFF."""
        sig = np.full((n_docs, self.num_perm), np.iinfo(np.uint32).max, np.uint32)
        x = ((h >> np.uint64(32)) ^ h) & np.uint64(0xFFFFFFFF)  # fold 64-bit shingle hashes to 32-bit keys
        for lo in range(0, x.size, chunk):
            xs, ds = x[lo : lo + chunk], doc[lo : lo + chunk]
            starts = np.flatnonzero(np.r_[True, ds[1:] != ds[:-1]])
            with np.errstate(over="ignore"):
                v = ((xs[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)).astype(np.uint32)  # [S, P]
            mins = np.minimum.reduceat(v, starts, axis=0)  # [docs in chunk, P]
            # a doc split across two chunks keeps the smaller of its two partial minima
            np.minimum.at(sig, ds[starts], mins)
        return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """[N, bands] uint64: one hash per band of ``rows`` signature entries."""
    n = sig.shape[0]
    parts = sig[:, : bands * rows].reshape(n, bands, rows).astype(np.uint64)
    mult = (np.arange(1, rows + 1, dtype=np.uint64) * _MIX) | np.uint64(1)
    with np.errstate(over="ignore"):
        return (parts * mult[None, None, :]).sum(axis=2, dtype=np.uint64) ^ (parts[:, :, 0] << np.uint64(17))


def near_duplicate_pairs(sig: np.ndarray, bands: int, rows: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j), j < i, whose signatures share a band bucket and agree on >= ``threshold`` of entries.

    In each band every row is compared with the first (lowest-index) row of its bucket.
    """
    n = sig.shape[0]
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = band_keys(sig, bands, rows)
    empty = (sig == np.iinfo(np.uint32).max).all(axis=1)  # docs with no tokens never match
    idx = np.arange(n, dtype=np.int64)
    found = []
    for j in range(bands):
        order = np.lexsort((idx, keys[:, j]))
        k = keys[order, j]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        rep = np.repeat(order[starts], np.diff(np.r_[starts, n]))
        m = rep != order
        found.append(order[m] * n + rep[m])
    code = np.unique(np.concatenate(found))
    a, b = code // n, code % n
    keep = ~(empty[a] | empty[b])
    a, b = a[keep], b[keep]
    sim = np.empty(a.size)
    for lo in range(0, a.size, 1 << 18):
        sim[lo : lo + (1 << 18)] = (sig[a[lo : lo + (1 << 18)]] == sig[b[lo : lo + (1 << 18)]]).mean(axis=1)
    ok = sim >= threshold
    return a[ok], b[ok]


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each of ``n`` nodes, the smallest node index of its connected component under edges (a, b)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, label = connected_components(g, directed=False)
    first = np.full(label.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(first, label, np.arange(n))
    return first[label]
