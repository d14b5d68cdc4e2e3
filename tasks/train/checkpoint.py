"""Step-numbered, atomic checkpoints of every stateful part of a training run (SFT, RL).

Layout: ``<root>/step_000012/`` holds the trainer's files (weights and optimizer, written by the
trainer: plain ``torch.save`` or DeepSpeed's own format) and ``state.pt`` (step, data cursor, RNG
states, MLflow run id). A checkpoint is written under ``step_000012.tmp`` and renamed into place
only when complete, so a process killed mid-write leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

_PREFIX = "step_"


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def latest_checkpoint(root: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit()]
    done = [p for p in done if (p / "state.pt").exists()]
    return max(done, key=lambda p: int(p.name[len(_PREFIX) :]), default=None)


def save_checkpoint(
    root: str | Path,
    step: int,
    state: dict[str, Any],
    write_trainer: Callable[[Path], None],
    *,
    keep: int = 2,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
) -> Path:
    """Write ``step``'s checkpoint atomically and prune all but the newest ``keep``.

    ``write_trainer(dir)`` writes weights and optimizer into ``dir`` (called on every rank: DeepSpeed
    shards optimizer state per rank); the main rank writes ``state.pt`` and renames the directory.
    """
    root = Path(root)
    final = root / f"{_PREFIX}{step:06d}"
    tmp = root / f"{final.name}.tmp"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    write_trainer(tmp)
    barrier()
    if is_main:
        torch.save(state, tmp / "state.pt")
        _fsync_dir(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(root)
        steps = sorted(
            (p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit()),
            key=lambda p: int(p.name[len(_PREFIX) :]),
        )
        for old in steps[: max(0, len(steps) - keep)]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path) / "state.pt", weights_only=False)


def _fsync_dir(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
