"""Kernel tests run under the Triton interpreter on CPU (`TRITON_INTERPRET=1 pytest tests/kernels`).

On a GPU without the interpreter only ``test_rl_paths.py`` runs (on CUDA): the other files build CPU
tensors for the interpreter, and the kernels' GPU numbers come from ``bench/lightning.py`` and
``bench/logprobs.py``."""

from __future__ import annotations

import math
import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
if not INTERPRET and not torch.cuda.is_available():
    pytest.exit("tests/kernels need TRITON_INTERPRET=1 (or a GPU): run `make test`", returncode=4)
collect_ignore = [] if INTERPRET else ["test_agreement.py", "test_lightning.py", "test_logprobs.py"]


@pytest.fixture
def poisoned(monkeypatch):
    """Every tensor the kernels' host code allocates with empty/empty_like/new_empty starts as NaN."""
    empty_like, new_empty, empty = torch.empty_like, torch.Tensor.new_empty, torch.empty

    def fill(t):
        if t.is_floating_point():
            t.fill_(math.nan)
        return t

    monkeypatch.setattr(torch, "empty_like", lambda *a, **kw: fill(empty_like(*a, **kw)))
    monkeypatch.setattr(torch, "empty", lambda *a, **kw: fill(empty(*a, **kw)))
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, *a, **kw: fill(new_empty(self, *a, **kw)))


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """||a - ref|| / ||ref|| in fp64; NaN anywhere gives NaN (which fails every `<` check)."""
    a, ref = a.double(), ref.double()
    return ((a - ref).norm() / ref.norm().clamp_min(1e-30)).item()
