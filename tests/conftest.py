"""Test-wide settings: tool state, caches and telemetry stay in a temp dir (never the home
directory); torch stays on one thread (2-core machines)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

_STATE = tempfile.mkdtemp(prefix="m1-tests-")
atexit.register(shutil.rmtree, _STATE, ignore_errors=True)
os.environ.setdefault("PREFECT_HOME", os.path.join(_STATE, "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.path.join(_STATE, "prefect-results"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.join(_STATE, 'mlflow.db')}")
os.environ.setdefault("HF_HOME", os.path.join(_STATE, "hf"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_STATE, "matplotlib"))
os.environ.setdefault("XDG_CACHE_HOME", os.path.join(_STATE, "cache"))
os.environ.setdefault("XDG_CONFIG_HOME", os.path.join(_STATE, "config"))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DVC_SITE_CACHE_DIR", os.path.join(_STATE, "dvc"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(_STATE, "triton"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
