"""The whole M1 recipe as one Prefect flow named ``m1``; its deployment is ``m1/full-pipeline``.

    python -m flows.full_pipeline                    # every stage on the tiny default (`make run`)
    python -m flows.full_pipeline --only clean,dedup # some stages (their upstream must exist)
    python -m flows.full_pipeline --force            # rerun even stages whose inputs are unchanged

At scale (README): ``prefect server start``, ``prefect work-pool create m1-cpu --type process``,
``prefect deploy --all`` (reads prefect.yaml), a worker per pool, then
``prefect deployment run m1/full-pipeline``.

Resume (``flows.runner``): a stage that succeeds writes a stamp (``runs/stamps/<stage>.json``) with
the fingerprint of its command, code, inputs and params and the hash of every output file. A rerun
skips stages whose fingerprint is unchanged and whose outputs are intact, so after a failure only
the failed stage and those below it run; a stage writes to a partial folder that replaces its output
only when complete, and long stages (SFT, RL) resume from their checkpoints inside it. Each finished
stage is also recorded in dvc.lock and the DVC cache (``dvc commit``), so ``dvc status`` / ``dvc
repro`` agree with the flow, and in MLflow: one parent run per pipeline run, a nested run per stage
(``flows.mlflow_runs``). Two flows in one folder do not run the same stage at once (a lock per stage).

Without ``PREFECT_API_URL``, ``main`` starts Prefect's temporary API server itself, through
``flows.guard``, so that a ``kill -9`` of the flow takes the server (and every stage) with it.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import flows  # noqa: F401  (sets tool-state locations before prefect is imported)
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import mlflow_runs
from flows.dag import PARAMS_FILE, ROOT, Stage, beside, topological, waits
from flows.runner import execute_stage, guarded
from flows.stages import STAGES, SUMMARY
from tasks.config import check_sections, exits_cleanly


def _stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage named {name!r}; stages: {', '.join(s.name for s in STAGES)}")


#: the environment of a torch stage (``gpu``) the flow may run beside another torch stage: OpenMP
#: threads that wait for work spin on their core, and two torch processes of 2 threads each on 2
#: cores took 9x as long as one alone (19.9 s against 2.1 s); with passive waiting 2.8-3.0 s each
#: (LOG.md, issue 11)
SHARED_CORES_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def stage_env(stage: Stage) -> dict[str, str]:
    """``SHARED_CORES_ENV`` for a torch stage another torch stage may run beside, else nothing:
    spinning threads are faster alone (2.2 s against 2.8 s; SFT 1.2 against 1.65 s a step), and
    passive curation stages beside a spinning SFT slowed it to 9 s a step (LOG.md)."""
    return SHARED_CORES_ENV if stage.gpu and any(s.gpu for s in beside(stage, STAGES)) else {}


@task(name="stage", task_run_name="{name}", cache_policy=NO_CACHE)
def run_stage(name: str, force: bool = False, root: str = str(ROOT), parent_run: str | None = None) -> dict:
    """A Prefect task around ``execute_stage``: returns small metadata, never data."""
    logger = get_run_logger()
    stage = _stage(name)
    return execute_stage(stage, root=Path(root), force=force, echo=logger.info, parent_run=parent_run,
                         env=stage_env(stage))


@flow(name="m1", log_prints=True)
def full_pipeline(only: list[str] | None = None, force: bool = False, root: str = str(ROOT)) -> list[dict]:
    """Run the DAG of ``flows.stages`` in dependency order; independent stages run concurrently.

    ``root`` is the project directory the stages run in (their paths are relative to it).
    """
    if only:
        unknown = sorted(set(only) - {s.name for s in STAGES})
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages: {[s.name for s in STAGES]}")
    selected = [s for s in STAGES if not only or s.name in only]
    # every section the stages read is checked before the first one starts, not when the fifth does
    check_sections(Path(root) / PARAMS_FILE, sorted({k for s in selected for k in s.params(Path(root))}))
    tags = {"m1.only": ",".join(only) if only else "all", "m1.force": str(force)}
    with mlflow_runs.pipeline_run(Path(root), selected, tags) as parent:
        futures = {}
        for s in topological(STAGES):
            if only and s.name not in only:
                continue
            wait_for = [futures[u] for u in waits(s, STAGES) if u in futures]
            kind = ["gpu"] if s.gpu else ["cpu"]
            futures[s.name] = run_stage.with_options(tags=kind).submit(s.name, force, root, parent, wait_for=wait_for)
        results = [f.result() for f in futures.values()]
    for r in results:
        took = "skipped (current)" if r["skipped"] else f"{r['seconds']:.1f}s"
        print(f"{r['stage']:>16}: {took}")
    return results


@contextmanager
def prefect_api() -> Iterator[None]:
    """Prefect's API for this process: ``PREFECT_API_URL`` when set, else a temporary server that dies
    with this process. It is the server Prefect would start itself (``SubprocessASGIServer``: the
    same uvicorn command and settings), but Prefect's is left running, orphaned, by a ``kill -9``."""
    import prefect
    from prefect.settings import (PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
                                  get_current_settings, temporary_settings)

    if PREFECT_API_URL.value():
        yield
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    server = subprocess.Popen(guarded([
        sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
        "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--lifespan", "on"]), env=env)
    url = f"http://127.0.0.1:{port}/api"
    try:
        import httpx

        deadline = time.time() + PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"Prefect's API server exited with status {server.returncode} while starting")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"Prefect's API server did not answer on {url} within "
                                   f"{PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()} s")
            time.sleep(0.2)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield
            finally:  # the flow's last logs and events go out before the server stops
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)
                EventsWorker.drain_all(timeout=5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated stage names")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s] or None
    store = threading.Thread(target=mlflow_runs.open_store, daemon=True)
    store.start()
    with prefect_api():
        store.join()
        full_pipeline(only=only, force=args.force)
    if (ROOT / SUMMARY).exists():  # the run ends with the held-out accuracy of its policies
        print(f"\n{SUMMARY}:\n{(ROOT / SUMMARY).read_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
