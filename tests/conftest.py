"""Test-wide settings: tool state stays in a temp dir, torch stays on few threads (2-core machines)."""

from __future__ import annotations

import os
import tempfile

import pytest

_STATE = tempfile.mkdtemp(prefix="m1-tests-")
os.environ.setdefault("PREFECT_HOME", os.path.join(_STATE, "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.path.join(_STATE, "prefect-results"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.join(_STATE, 'mlflow.db')}")
os.environ.setdefault("HF_HOME", os.path.join(_STATE, "hf"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
