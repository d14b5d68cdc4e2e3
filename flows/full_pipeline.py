"""The whole M1 recipe as one Prefect flow named ``m1``; its deployment is ``m1/full-pipeline``.

    python -m flows.full_pipeline                    # every stage on the tiny default (`make run`)
    python -m flows.full_pipeline --only clean,dedup # some stages (their upstream must exist)
    python -m flows.full_pipeline --force            # rerun even stages whose inputs are unchanged

At scale (README): ``prefect server start``, ``prefect work-pool create m1-cpu --type process``,
``prefect deploy --all`` (reads prefect.yaml), a worker per pool, then
``prefect deployment run m1/full-pipeline``.

Resume: each stage writes a stamp (``runs/stamps/<stage>.json``) holding the fingerprint of its
command, dependency files and params when it succeeds. A rerun skips stages whose fingerprint is
unchanged and whose outputs exist, so after a failure only the failed stage and those below it run;
long stages (SFT, RL) resume inside from their own checkpoints. Each finished stage is also recorded
in dvc.lock and the DVC cache (``dvc commit``), so ``dvc status`` / ``dvc repro`` agree with the flow.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import flows  # noqa: F401  (sets tool-state locations before prefect is imported)
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.dag import PARAMS_FILE, ROOT, Stage, fingerprint, topological, upstream
from flows.stages import STAGES, SUMMARY
from tasks.config import check_sections, exits_cleanly

STAMPS = Path("runs/stamps")
LOGS = Path("runs/logs")
_DVC_LOCK = threading.Lock()  # one `dvc commit` at a time: DVC holds a repository lock


def _stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no stage named {name!r}; stages: {', '.join(s.name for s in STAGES)}")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def stage_is_current(stage: Stage, root: Path = ROOT) -> bool:
    """True when the stage's stamp matches its fingerprint now and every output exists."""
    stamp = root / STAMPS / f"{stage.name}.json"
    if not stamp.exists():
        return False
    recorded = json.loads(stamp.read_text()).get("fingerprint")
    return recorded == fingerprint(stage, root) and all((root / o).exists() for o in stage.outs)


def execute_stage(stage: Stage, root: Path = ROOT, force: bool = False, echo=print) -> dict:
    """Run one stage's command in ``root``, teeing its output to ``runs/logs/<stage>.log``.

    Skips a stage that is current (see ``stage_is_current``) unless ``force``. Raises with the log's
    tail when the command fails; the stamp is written only on success, so a rerun retries it.
    """
    if not force and stage_is_current(stage, root):
        echo(f"[{stage.name}] up to date, skipped")
        return {"stage": stage.name, "skipped": True, "seconds": 0.0}
    fp = fingerprint(stage, root)
    log_path = root / LOGS / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    echo(f"[{stage.name}] {stage.cmd}")
    t0 = time.time()
    tail: list[str] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, *stage.argv], cwd=root, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line.rstrip()])[-20:]
            echo(f"[{stage.name}] {line.rstrip()}")
        rc = proc.wait()
    seconds = time.time() - t0
    if rc != 0:
        raise RuntimeError(
            f"stage {stage.name!r} failed with exit code {rc} after {seconds:.1f}s; "
            f"log: {log_path}\n" + "\n".join(tail)
        )
    if (root / ".dvc").is_dir():
        record_in_dvc(stage, root)
    _atomic_write(
        root / STAMPS / f"{stage.name}.json",
        json.dumps({"stage": stage.name, "fingerprint": fp, "seconds": seconds, "cmd": stage.cmd}),
    )
    return {"stage": stage.name, "skipped": False, "seconds": seconds}


def record_in_dvc(stage: Stage, root: Path = ROOT) -> None:
    """Record the stage's dependencies and outputs in dvc.lock and the DVC cache (``dvc commit``).

    dvc.lock must not be git-ignored (DVC refuses); commit it to pin a data version.

    After a Prefect run, ``dvc status`` is clean and ``dvc repro`` finds nothing to do: the datasets
    are versioned whichever runner produced them.
    """
    with _DVC_LOCK:
        done = subprocess.run(
            [sys.executable, "-m", "dvc", "commit", "--force", "--quiet", stage.name],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage.name!r}: `dvc commit` failed:\n{done.stdout.strip()}")


@task(name="stage", task_run_name="{name}", cache_policy=NO_CACHE)
def run_stage(name: str, force: bool = False, root: str = str(ROOT)) -> dict:
    """A Prefect task around ``execute_stage``: returns small metadata, never data."""
    logger = get_run_logger()
    return execute_stage(_stage(name), root=Path(root), force=force, echo=logger.info)


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
    futures = {}
    for s in topological(STAGES):
        if only and s.name not in only:
            continue
        wait_for = [futures[u] for u in upstream(s, STAGES) if u in futures]
        tags = ["gpu"] if s.gpu else ["cpu"]
        futures[s.name] = run_stage.with_options(tags=tags).submit(s.name, force, root, wait_for=wait_for)
    results = [f.result() for f in futures.values()]
    for r in results:
        took = "skipped (current)" if r["skipped"] else f"{r['seconds']:.1f}s"
        print(f"{r['stage']:>16}: {took}")
    return results


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated stage names")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s] or None
    full_pipeline(only=only, force=args.force)
    if (ROOT / SUMMARY).exists():  # the run ends with the held-out accuracy of its policies
        print(f"\n{SUMMARY}:\n{(ROOT / SUMMARY).read_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
