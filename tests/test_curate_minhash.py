"""MinHash LSH pieces against hand-computed shingles, exact Jaccard and a hand-drawn graph."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tasks.curate.minhash import (
    MinHasher,
    components,
    dedup_key,
    lsh_params,
    near_duplicate_pairs,
    number_keys,
    shingles,
)


def test_dedup_key_ignores_case_spacing_and_final_punctuation_but_not_symbols():
    s = pl.Series(["Solve  2x + 3 = 7 for x.", "solve 2x+3=7 FOR x", "Solve 2x-3=7 for x.", "", None])
    keys = pl.DataFrame({"q": s}).select(dedup_key(pl.col("q"))).to_series().to_list()
    assert keys == ["solve 2x+3=7 for x", "solve 2x+3=7 for x", "solve 2x-3=7 for x", "", ""]


def test_shingles_counts_windows_short_texts_and_empty_texts():
    doc, h = shingles(pl.Series(["a b c d", "x y", "", "p q r"]), 3)
    # "a b c d": 2 windows; "x y": shorter than 3, one whole-text shingle; "": none; "p q r": 1
    assert doc.tolist() == [0, 0, 1, 3]
    # the window "b c d" of doc 0 hashes like the same three tokens anywhere else
    doc2, h2 = shingles(pl.Series(["b c d"]), 3)
    assert h2[0] == h[1]
    # a short text's one shingle is the hash of its tokens in order: the 2-gram "x y" elsewhere
    _, h3 = shingles(pl.Series(["x y z"]), 2)
    assert h[2] == h3[0]


def test_a_whole_text_shingle_size_costs_no_more_than_the_longest_text():
    texts = pl.Series(["a b c d", "x y", "", "p q r"])
    doc, h = shingles(texts, 5)  # every text shorter: one shingle each of its tokens
    big_doc, big_h = shingles(texts, 10**9)  # rl_data's whole-text size: loops to the longest text only
    assert doc.tolist() == big_doc.tolist() == [0, 1, 3] and h.tolist() == big_h.tolist()


def test_signature_agreement_estimates_jaccard():
    words = [f"w{i}" for i in range(200)]
    a = " ".join(words[:150])
    b = " ".join(words[50:200])  # 1-gram Jaccard = 100 / 200 = 0.5
    doc, h = shingles(pl.Series([a, b]), 1)
    sig = MinHasher(num_perm=512, seed=0).signatures(doc, h, 2)
    est = (sig[0] == sig[1]).mean()
    assert abs(est - 0.5) < 0.07  # binomial std at 512 permutations is 0.022; three of them


def test_signatures_do_not_depend_on_chunking():
    texts = pl.Series([" ".join(f"t{(i * 7 + j) % 50}" for j in range(30)) for i in range(20)])
    doc, h = shingles(texts, 2)
    m = MinHasher(64, seed=3)
    assert np.array_equal(m.signatures(doc, h, 20), m.signatures(doc, h, 20, chunk=7))


def test_lsh_params_fit_the_budget_and_move_with_the_threshold():
    b, r = lsh_params(0.5, 64)
    assert b * r <= 64
    b2, r2 = lsh_params(0.9, 64)
    # the collision curve's midpoint (1/b)^(1/r) sits near the threshold
    assert abs((1 / b) ** (1 / r) - 0.5) < 0.15 and abs((1 / b2) ** (1 / r2) - 0.9) < 0.1


def test_near_duplicate_pairs_and_components():
    texts = pl.Series([
        "the quick brown fox jumps over the lazy dog today",
        "the quick brown fox jumps over the lazy dog",
        "completely different words here about algebra and numbers",
        "the quick brown fox jumps over the lazy dog today",
        "",
        "",
    ])
    doc, h = shingles(texts, 2)
    sig = MinHasher(128, seed=0).signatures(doc, h, len(texts))
    b, r = lsh_params(0.6, 128)
    a, c = near_duplicate_pairs(sig, b, r, 0.6)
    pairs = {(int(x), int(y)) for x, y in zip(a, c)}
    assert (1, 0) in pairs and (3, 0) in pairs
    assert all(2 not in p and 4 not in p and 5 not in p for p in pairs)  # empty texts never match
    assert components(6, a, c).tolist() == [0, 0, 2, 0, 4, 5]


def test_components_by_hand():
    # edges 4-2, 2-1 and 5-3: {1, 2, 4} and {3, 5}, node 0 alone
    root = components(6, np.array([4, 2, 5]), np.array([2, 1, 3]))
    assert root.tolist() == [0, 1, 1, 3, 1, 3]


@pytest.mark.parametrize("ordered, same", [(True, False), (False, True)])
def test_number_keys(ordered, same):
    k = number_keys(pl.Series(["Compute 3^5.", "Compute 5^3."]), ordered=ordered)
    assert (k[0] == k[1]) == same
