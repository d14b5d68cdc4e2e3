"""MLflow as users compare pipeline runs: one parent run per pipeline run, a nested run per stage.

    .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --workers 1   # experiment "m1"

- The parent run (``pipeline-<date>-<time>``) holds every params section its stages read, flattened
  (``rl.lr``, ``curate.dedup.semantic``), and a summary of each stage's outcome: its counts and final
  metrics under the stage's name (``clean/kept``, ``difficulty/passes_histogram/0/10``,
  ``rl/eval/accuracy``). Select two pipeline runs and Compare: the settings and outcomes that differ.
- A stage's run, nested under it, holds the stage's sections, its counts (every number of its
  ``report.json``, flattened: ``kept``, ``by_reason/too_hard``, ``by_task/sudoku``), the figures and
  tables of its output folder as artifacts, and, where it wrote ``policy/``, that policy as an MLflow
  model (``flows/policy_model.py``). SFT and RL log their per-step metrics into the same run
  (``tasks.train.tracking``: the runner hands the run to the stage process).
- A stage skipped as current still gets a nested run with its params and counts, tagged
  ``m1.reused_from`` with the run that made its outputs, so every pipeline run has a full row.
- A pipeline run that did not finish (killed, or a stage failed) continues in the same parent run
  when rerun with the same params; a killed stage that resumes continues its own run. A stage that
  fails ends FAILED, one killed by a signal KILLED.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from flows.dag import PARAMS_FILE, Stage
from tasks.config import check_sections
from tasks.train.tracking import experiment_id, log_metrics, log_params, mlflow_client

EXPERIMENT = "m1"
RECORD = Path("runs/mlflow_pipeline.json")  # the pipeline's parent run, until it finishes
LOCK = Path("runs/.pipeline.lock")  # held by a live flow: its parent run is not another flow's to continue
#: files of a stage's output folder logged as artifacts: figures and tables (datasets stay with DVC)
ARTIFACT_SUFFIXES = (".png", ".svg", ".pdf", ".html", ".md", ".csv", ".json")
#: folders not logged as plain artifacts: resume state, and the policy (logged as a model)
SKIP_FOLDERS = ("checkpoints", "policy", "tokenizer")
SKIP_FILES = ("mlflow_run.json",)  # the tracker's own bookkeeping


def open_store() -> None:
    """Open the tracking store now: a fresh SQLite store creates its tables (about 6 s), which the
    flow does while Prefect's API server starts rather than before its first stage."""
    client = mlflow_client()
    if client is not None:
        client.search_experiments(max_results=1)


def flatten(tree: Any, prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Leaves of nested mappings by joined key; lists stay whole (a param value, not a metric)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{sep}{k}" if prefix else str(k), sep))
        return out
    return {prefix: tree}


def report_numbers(out_dir: Path) -> dict[str, float]:
    """Every number of the stage's ``report.json``, nested keys joined by ``/``."""
    report = out_dir / "report.json"
    if not report.is_file():
        return {}
    return {k: float(v) for k, v in flatten(json.loads(report.read_text()), sep="/").items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def final_metrics(out_dir: Path) -> dict[str, float]:
    """The last value of each metric in the stage's ``metrics.jsonl`` (training stages)."""
    metrics = out_dir / "metrics.jsonl"
    found: dict[str, float] = {}
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            if line.strip():
                found.update({k: float(v) for k, v in json.loads(line).items() if k != "step"})
    return found


def counts(out_dir: Path) -> dict[str, float]:
    """A stage's outcome as numbers: its report's and its final metrics."""
    return {**report_numbers(out_dir), **final_metrics(out_dir)}


def _params(stage: Stage, root: Path) -> dict[str, Any]:
    """The stage's sections as the stage reads them (defaults filled in), flattened: ``rl.lr``."""
    return flatten({k: p.to_dict() for k, p in check_sections(root / PARAMS_FILE, stage.params(root)).items()})


def _git_commit(root: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@contextmanager
def pipeline_run(root: Path, stages: list[Stage], tags: dict[str, str]) -> Iterator[str | None]:
    """The parent run of one pipeline run (None where mlflow is not installed): continued from the
    last pipeline run if that one did not finish and read the same params, else new. Ends FINISHED,
    or FAILED when the body raises."""
    client = mlflow_client()
    if client is None:
        yield None
        return
    values = {k: v for s in stages for k, v in _params(s, root).items()}
    params_sha = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
    (root / LOCK).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:  # another flow runs in this folder: leave its record alone
            alone = False
        run_id = _continued(client, root / RECORD, params_sha) if alone else None
        if run_id is None:
            run_id = client.create_run(
                experiment_id(client, EXPERIMENT), run_name=time.strftime("pipeline-%Y%m%d-%H%M%S"),
                tags={**tags, "m1.params_sha": params_sha, "m1.git_commit": _git_commit(root)},
            ).info.run_id
            log_params(client, run_id, values)
        if alone:
            (root / RECORD).write_text(json.dumps({"run_id": run_id}) + "\n")
        try:
            yield run_id
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        if alone:
            (root / RECORD).unlink(missing_ok=True)
    finally:
        os.close(fd)


def _continued(client, record: Path, params_sha: str) -> str | None:
    """The recorded parent run if it did not finish and read the same params; a recorded run left
    RUNNING that is not continued (params changed) is marked KILLED."""
    if not record.exists():
        return None
    run_id = json.loads(record.read_text())["run_id"]
    try:
        run = client.get_run(run_id)
    except Exception:  # deleted, or in another tracking store
        return None
    if run.info.status != "FINISHED" and run.data.tags.get("m1.params_sha") == params_sha:
        client.update_run(run_id, status="RUNNING")
        return run_id
    if run.info.status == "RUNNING":
        client.set_terminated(run_id, "KILLED")
    return None


def start_stage(parent_id: str, stage: Stage, root: Path, reuse: str | None) -> str:
    """The stage's nested run: ``reuse`` (an attempt killed before, resumed now) moved under this
    parent and reopened, or a new run holding the stage's params."""
    client = mlflow_client()
    if reuse:
        try:
            client.get_run(reuse)
        except Exception:
            reuse = None
    if reuse:
        client.update_run(reuse, status="RUNNING")
        client.set_tag(reuse, "mlflow.parentRunId", parent_id)
        return reuse
    run_id = client.create_run(
        client.get_run(parent_id).info.experiment_id, run_name=stage.name,
        tags={"mlflow.parentRunId": parent_id, "m1.stage": stage.name, "m1.cmd": stage.cmd},
    ).info.run_id
    log_params(client, run_id, _params(stage, root))
    return run_id


def stage_failed(run_id: str, returncode: int) -> None:
    """A stage command that exited non-zero ends FAILED; one killed by a signal, KILLED."""
    mlflow_client().set_terminated(run_id, "KILLED" if returncode < 0 else "FAILED")


def stage_done(parent_id: str, run_id: str, stage: Stage, root: Path) -> None:
    """Counts, artifacts and the policy model of a finished stage into its run; the counts under the
    stage's name into the parent; the run ends FINISHED."""
    import mlflow

    client = mlflow_client()
    out = root / stage.output
    log_metrics(client, run_id, report_numbers(out), step=0)  # a training stage's steps are logged already
    for f in sorted(out.rglob("*")) if out.is_dir() else []:
        rel = f.relative_to(out)
        if f.is_file() and f.suffix in ARTIFACT_SUFFIXES and rel.parts[0] not in SKIP_FOLDERS and f.name not in SKIP_FILES:
            client.log_artifact(run_id, str(f), artifact_path=str(rel.parent) if rel.parent.parts else None)
    if (out / "policy" / "config.json").is_file():
        with mlflow.start_run(run_id=run_id):
            mlflow.pyfunc.log_model(
                name="policy", python_model=str(Path(__file__).with_name("policy_model.py")),
                artifacts={"policy": str(out / "policy")}, pip_requirements=["torch", "transformers", "pandas"],
            )
    log_metrics(client, parent_id, {f"{stage.name}/{k}": v for k, v in counts(out).items()}, step=0)
    client.set_terminated(run_id, "FINISHED")


def stage_skipped(parent_id: str, stage: Stage, root: Path, made_by_run: str | None) -> None:
    """A nested run for a stage whose outputs were current: its params and counts, no artifacts.
    Nothing when the run that made them is already a child of this parent (a continued pipeline run)."""
    client = mlflow_client()
    if made_by_run:
        try:
            if client.get_run(made_by_run).data.tags.get("mlflow.parentRunId") == parent_id:
                return
        except Exception:  # deleted, or in another tracking store
            pass
    run_id = client.create_run(
        client.get_run(parent_id).info.experiment_id, run_name=stage.name,
        tags={"mlflow.parentRunId": parent_id, "m1.stage": stage.name, "m1.cmd": stage.cmd,
              "m1.skipped": "true", "m1.reused_from": made_by_run or "unknown"},
    ).info.run_id
    log_params(client, run_id, _params(stage, root))
    found = counts(root / stage.output)
    log_metrics(client, run_id, found, step=0)
    log_metrics(client, parent_id, {f"{stage.name}/{k}": v for k, v in found.items()}, step=0)
    client.set_terminated(run_id, "FINISHED")
