"""Step-numbered, atomic checkpoints of every stateful part of a training run (SFT, RL).

Layout: ``<root>/step_000012/`` holds the trainer's files (weights and optimizer, written by the
trainer: plain ``torch.save`` or DeepSpeed's own format), ``state.pt`` (step, data cursor, RNG
states, MLflow run id) and ``made_by.json`` (what made it: ``made_by``). A checkpoint is written
under ``step_000012.tmp`` and renamed into place only when complete, so a process killed mid-write
leaves the previous checkpoint as the latest.

A run resumes only from checkpoints that the same params and inputs made (``resume_from``): a
changed learning rate or a new base policy starts afresh and says which setting or input changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

_PREFIX = "step_"


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def tree_digest(path: str | Path) -> str:
    """sha256 over the relative names and bytes of every file under ``path`` (or of the file itself)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        h.update(str(f.relative_to(path)).encode() if path.is_dir() else b"")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def made_by(params: Mapping[str, Any], inputs: Mapping[str, str | Path]) -> dict[str, Any]:
    """What a training run's result depends on: the values of its params sections (``Params``
    dataclasses by section name) and a digest of each input file or folder (``""``: none given)."""
    return {
        "params": {k: p.to_dict() for k, p in params.items()},
        "inputs": {k: tree_digest(v) if v not in ("", None) else "" for k, v in inputs.items()},
    }


def digest(made: Mapping[str, Any]) -> str:
    """A short, stable name for a ``made_by`` record (what the MLflow run file keeps)."""
    return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:16]


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two ``made_by`` records: ``rl.lr: 0.001 -> 0.05``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b, name = old.get(key, "<absent>"), new.get(key, "<absent>"), f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}" if not name.startswith("inputs.") else f"{name} changed")
    return out


def _steps(root: Path) -> list[Path]:
    """Complete and partial ``step_*`` folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(_PREFIX) and p.name[len(_PREFIX) :].isdigit()]
    return sorted(done, key=lambda p: int(p.name[len(_PREFIX) :]))


def resume_from(root: str | Path, made: Mapping[str, Any], echo: Callable[[str], None] = print) -> Path | None:
    """The latest checkpoint under ``root`` if ``made`` (see ``made_by``) made it, else None.

    Checkpoints that other params or inputs made are deleted, and ``echo`` says which setting or
    input differs: resuming from them would continue a different run under this run's name.
    """
    root = Path(root)
    last = latest_checkpoint(root)
    if last is None:
        return None
    record = last / "made_by.json"
    old = json.loads(record.read_text()) if record.exists() else {}
    if old == json.loads(json.dumps(made)):  # through JSON, as the record was: tuples become lists
        return last
    why = "; ".join(differences(old, made)) if old else "they record no params (written before made_by.json)"
    echo(f"{root}: not resuming from {last.name}, made by other settings ({why}); starting afresh")
    for p in _steps(root):
        shutil.rmtree(p, ignore_errors=True)
    return None


def latest_checkpoint(root: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or None."""
    done = [p for p in _steps(Path(root)) if (p / "state.pt").exists()]
    return done[-1] if done else None


def save_checkpoint(
    root: str | Path,
    step: int,
    state: dict[str, Any],
    write_trainer: Callable[[Path], None],
    *,
    made: Mapping[str, Any],
    keep: int,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
) -> Path:
    """Write ``step``'s checkpoint atomically and prune all but the newest ``keep``.

    ``write_trainer(dir)`` writes weights and optimizer into ``dir`` (called on every rank: DeepSpeed
    shards optimizer state per rank); the main rank writes ``state.pt`` and ``made_by.json``
    (``made``, from ``made_by``) and renames the directory.
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
        (tmp / "made_by.json").write_text(json.dumps(made, sort_keys=True, indent=1) + "\n")
        _fsync_dir(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(root)
        steps = _steps(root)
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
