"""Metrics to a local ``metrics.jsonl`` (always) and to MLflow (when importable; the GPU image has
none). The jsonl file is what ``tasks.train.rl.plot`` and the resume test read; MLflow is for the UI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class RunTracker:
    """One training run's metrics sink. ``resume_step`` drops jsonl lines past the checkpoint the run
    resumes from (a killed run may have logged steps it never checkpointed), and ``run_id`` reattaches
    to the same MLflow run."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        run_id: str | None = None,
        resume_step: int = 0,
        enabled: bool = True,
    ):
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self.run_id = run_id
        self._mlflow = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
        self.path.write_text("".join(line + "\n" for line in kept))
        try:
            import mlflow
        except ImportError:
            return
        self._mlflow = mlflow
        mlflow.set_experiment(experiment)
        if run_id:
            mlflow.start_run(run_id=run_id)
        else:
            mlflow.start_run(run_name=run_name or None)
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        self.run_id = mlflow.active_run().info.run_id

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **clean}, sort_keys=True) + "\n")
        if self._mlflow is not None:
            self._mlflow.log_metrics({k.replace("@", "_at_"): v for k, v in clean.items()}, step=step)

    def close(self) -> None:
        if self._mlflow is not None:
            self._mlflow.end_run()
            self._mlflow = None


def read_metrics(out_dir: str | Path) -> list[dict[str, float]]:
    path = Path(out_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line]
