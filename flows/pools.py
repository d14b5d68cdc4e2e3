"""The M1 DAG across two Prefect work pools: CPU stages on the process pool ``m1-cpu``, the
``gpu``-tagged stages (``flows.stages``: sft, difficulty, rl) on the Docker pool ``m1-gpu`` of GPU
workers (image ``docker/Dockerfile``).

    prefect work-pool create m1-cpu --type process
    prefect work-pool create m1-gpu --type docker     # the worker host needs `pip install prefect-docker`
    prefect deploy --all                              # prefect.yaml: m1/full-pipeline, m1-stage/cpu, m1-stage/gpu, m1-pools/by-pool
    prefect worker start --pool m1-cpu & prefect worker start --pool m1-gpu &
    prefect deployment run m1-pools/by-pool

``m1-pools`` walks the DAG in dependency order and runs each stage as its own flow run of
``m1-stage`` through the deployment of its pool (``run_deployment``), so one stage = one job on the
right kind of worker; a stage starts when the stages it reads from have finished, independent
stages run at once. ``m1-stage`` runs one stage exactly as the flow ``m1`` does (same stamps, skip
and resume). ``m1/full-pipeline`` stays the one-machine deployment.
"""

from __future__ import annotations

from pathlib import Path

import flows  # noqa: F401  (sets tool-state locations before prefect is imported)
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment

from flows.dag import ROOT, Stage, topological, upstream
from flows.full_pipeline import run_stage
from flows.stages import STAGES

CPU_DEPLOYMENT = "m1-stage/cpu"
GPU_DEPLOYMENT = "m1-stage/gpu"


def pool_plan(stages: list[Stage], cpu: str, gpu: str, only: list[str] | None = None) -> list[tuple[str, str, list[str]]]:
    """(stage, deployment, upstream stages that run in this plan), in dependency order."""
    if only:
        unknown = sorted(set(only) - {s.name for s in stages})
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; stages: {[s.name for s in stages]}")
    chosen = [s for s in topological(stages) if not only or s.name in only]
    names = {s.name for s in chosen}
    return [(s.name, gpu if s.gpu else cpu, [u for u in upstream(s, stages) if u in names]) for s in chosen]


@flow(name="m1-stage", log_prints=True)
def one_stage(name: str, force: bool = False, root: str = str(ROOT)) -> dict:
    """One stage of ``flows.stages`` on whichever worker picked this flow run up."""
    return run_stage(name, force, root)


@task(name="dispatch", task_run_name="{name}@{deployment}", cache_policy=NO_CACHE)
def dispatch(name: str, deployment: str, force: bool, root: str) -> dict:
    """Run stage ``name`` through ``deployment`` and wait; a stage run that does not complete fails here."""
    run = run_deployment(deployment, parameters={"name": name, "force": force, "root": root}, timeout=None,
                         flow_run_name=f"{name}")
    if not run.state.is_completed():
        raise RuntimeError(f"stage {name!r} on {deployment}: flow run {run.id} ended {run.state.type.value}: "
                           f"{run.state.message}")
    return {"stage": name, "deployment": deployment, "flow_run": str(run.id)}


@flow(name="m1-pools", log_prints=True)
def by_pool(only: list[str] | None = None, force: bool = False, root: str = str(ROOT),
            cpu_deployment: str = CPU_DEPLOYMENT, gpu_deployment: str = GPU_DEPLOYMENT) -> list[dict]:
    """The DAG with every stage on its pool's deployment (``root``: the project directory as the
    workers see it)."""
    futures = {}
    for name, deployment, ups in pool_plan(STAGES, cpu_deployment, gpu_deployment, only):
        futures[name] = dispatch.submit(name, deployment, force, str(Path(root)), wait_for=[futures[u] for u in ups])
    results = [f.result() for f in futures.values()]
    for r in results:
        print(f"{r['stage']:>16}: {r['deployment']} ({r['flow_run']})")
    return results
