"""Metrics to a local ``metrics.jsonl`` (always) and to MLflow (when importable; the GPU image has
none). The jsonl file is what ``tasks.train.rl.plot`` and the resume tests read; MLflow is for the UI.

One training run is one MLflow run, however often it is killed and resumed:

- run by the flow, the stage's runner creates the stage's run (nested under the pipeline's run),
  hands it to the process through ``M1_MLFLOW_RUN_ID`` and ends it; the tracker only logs into it;
- run alone, the tracker reopens the run its checkpoint names, or the run ``DIR/mlflow_run.json``
  names when the process was killed before its first checkpoint and the same params and inputs
  made it; otherwise it starts a new run, and a recorded run left RUNNING is marked KILLED;
- a step already in the run's history (logged before a kill, recomputed after the resume, with the
  same values: resume is deterministic) is not logged again; metrics.jsonl is cut back to the
  resumed step, and a step reaches it only after MLflow has it;
- a process that exits without ``close()`` (an exception, ``sys.exit``) ends its run FAILED; a
  SIGKILLed one stays RUNNING until its resume reopens it or a fresh start marks it KILLED.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

#: the MLflow run a stage process logs into when the flow's runner started it
ENV_RUN = "M1_MLFLOW_RUN_ID"
_BATCH = 100  # MLflow takes at most 100 params (1000 metrics) per log_batch


def mlflow_client():
    """An ``MlflowClient`` on the configured tracking URI, or None where mlflow is not installed."""
    try:
        import mlflow
    except ImportError:
        return None
    return mlflow.tracking.MlflowClient()


def _artifact_root(name: str) -> str | None:
    """Artifacts of a ``sqlite:///DIR/x.db`` store go to ``DIR/mlruns/<experiment>`` (MLflow's default is
    ``./mlruns`` under whatever the working directory happens to be); other stores choose their own."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    folder = Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns" / re.sub(r"[^\w.-]", "_", name)
    return folder.as_uri()


def experiment_id(client, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside the database) if missing."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_root(name))
    except MlflowException:  # another process created it between the two calls
        return client.get_experiment_by_name(name).experiment_id


def metric_name(key: str) -> str:
    """``key`` with the characters MLflow refuses in metric names replaced (``pass@10`` -> ``pass_at_10``)."""
    return re.sub(r"[^\w\-. :/]", "_", key.replace("@", "_at_"))


def log_params(client, run_id: str, params: Mapping[str, Any]) -> None:
    """``params`` (flat name -> value) on the run, values as text cut to MLflow's 6000 characters."""
    from mlflow.entities import Param

    items = [Param(k, (v if isinstance(v, str) else json.dumps(v))[:6000]) for k, v in params.items()]
    for lo in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[lo : lo + _BATCH])


def log_metrics(client, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """Finite ``metrics`` at ``step`` in one batch per thousand."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [Metric(metric_name(k), float(v), now, step) for k, v in metrics.items()
             if v is not None and math.isfinite(float(v))]
    for lo in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[lo : lo + 1000])


def last_logged_step(client, run_id: str) -> int:
    """The highest step of any metric in the run's history (-1 when it has none)."""
    keys = client.get_run(run_id).data.metrics
    return max((m.step for k in keys for m in client.get_metric_history(run_id, k)), default=-1)


class RunTracker:
    """One training run's metrics sink (see the module docstring for which MLflow run it uses).

    ``made`` is the run's ``tasks.train.checkpoint.made_by`` record: a run killed before its first
    checkpoint is reopened only by a process that the same params and inputs started.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        made: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        resume_step: int = 0,
        enabled: bool = True,
    ):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self.run_id = run_id
        self._client = None
        self._owned = False  # this process ends the run (not the flow's runner)
        self._logged_through = -1
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []  # a run that starts at step 0 logs step 0 again; a resumed one continues after resume_step
        if self.path.exists() and resume_step > 0:
            kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
        self.path.write_text("".join(line + "\n" for line in kept))
        client = mlflow_client()
        if client is None:
            return
        from tasks.train.checkpoint import digest

        record = Path(out_dir) / "mlflow_run.json"
        made_digest = digest(made) if made is not None else None
        if os.environ.get(ENV_RUN):
            self.run_id = os.environ[ENV_RUN]
        else:
            self._owned = True
            self.run_id = run_id or self._recorded_run(client, record, made_digest)
            if self.run_id:
                client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = client.create_run(experiment_id(client, experiment), run_name=run_name or None).info.run_id
                log_params(client, self.run_id, params)
        self._logged_through = last_logged_step(client, self.run_id)
        record.write_text(json.dumps({"run_id": self.run_id, "made_by": made_digest}) + "\n")
        self._client = client
        atexit.register(self._end_unclosed)

    @staticmethod
    def _recorded_run(client, record: Path, made_digest: str | None) -> str | None:
        """The run of a process that died before its first checkpoint, if this run continues it;
        a recorded run that this one does not continue is marked KILLED if it was left RUNNING."""
        if not record.exists():
            return None
        old = json.loads(record.read_text())
        try:
            status = client.get_run(old["run_id"]).info.status
        except Exception:  # deleted, or recorded in another tracking store
            return None
        if made_digest is not None and old.get("made_by") == made_digest and status != "FINISHED":
            return old["run_id"]
        if status == "RUNNING":
            client.set_terminated(old["run_id"], "KILLED")
        return None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        # MLflow first: a step in metrics.jsonl is in MLflow too, wherever a SIGKILL lands
        if self._client is not None and step > self._logged_through:
            log_metrics(self._client, self.run_id, clean, step)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}, sort_keys=True) + "\n")

    def close(self) -> None:
        """The run is complete: FINISHED (a run the flow's runner handed over is ended by the runner)."""
        if self._client is not None:
            atexit.unregister(self._end_unclosed)
            if self._owned:
                self._client.set_terminated(self.run_id, "FINISHED")
            self._client = None

    def _end_unclosed(self) -> None:
        if self._client is not None and self._owned:
            self._client.set_terminated(self.run_id, "FAILED")


def read_metrics(out_dir: str | Path) -> list[dict[str, float]]:
    path = Path(out_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
