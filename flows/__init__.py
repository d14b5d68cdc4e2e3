"""Prefect flows composing the stages of ``flows.stages`` into the M1 pipeline.

Tool state stays inside the project unless the caller chose otherwise: Prefect's home and result
storage under ``.prefect/``, MLflow in ``mlflow.db`` (``mlflow ui --backend-store-uri
sqlite:///mlflow.db`` to compare runs); caches and telemetry as ``tasks`` sets them.
"""

import os

from tasks import ROOT as _ROOT  # importing tasks first: caches in the project, no telemetry
os.environ.setdefault("PREFECT_HOME", str(_ROOT / ".prefect"))
os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(_ROOT / ".prefect" / "results"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The embedded API server migrates its SQLite database on first start; 20 s is too short on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{_ROOT / 'mlflow.db'}")
