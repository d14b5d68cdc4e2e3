"""How the flow runs one stage, so that a kill, a failure or a second flow cannot leave it half-done.

    execute_stage(stage, root)      # what the Prefect task ``stage`` (flows.full_pipeline) calls

Under the stage's lock (``<parent>/.partial/<name>.lock``; a second flow reaching the same stage
stops with the holder's pid):

1. skip the stage if it is current: its stamp (``runs/stamps/<stage>.json``) holds the fingerprint
   of the command, code, inputs and params as they are now, and its output files still hash to what
   the stamp recorded (a deleted, truncated or added file makes it stale, as ``dvc status`` says);
2. delete the stamp, so a kill from here on leaves the stage not current;
3. run the command with ``--output`` pointed at ``<parent>/.partial/<name>``, on the output's
   filesystem. A partial output that an attempt with the same fingerprint began is kept (SFT and RL
   resume from the checkpoints inside it); any other is wiped first;
4. on success swap the partial output into place by rename (the previous output stays whole until
   then), record it in DVC and MLflow, and write the stamp with the hash of every output file.

A failed or killed command leaves the previous output whole and no stamp. The command and ``dvc
commit`` start through ``flows.guard``, so they die with the flow, and they inherit the lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from flows import mlflow_runs
from flows.dag import ROOT, Stage, fingerprint
from tasks.config import UsageError
from tasks.train.tracking import ENV_RUN

STAMPS = Path("runs/stamps")
LOGS = Path("runs/logs")
PARTIAL = ".partial"


class StageBusy(UsageError):
    """Another process holds the stage's lock (the command ends with this one line, status 2)."""


def guarded(argv: list[str]) -> list[str]:
    """``argv`` started through ``flows.guard``: killed when this process dies."""
    return [sys.executable, "-m", "flows.guard", str(os.getpid()), *argv]


def partial_path(stage: Stage, root: Path) -> Path:
    """Where the stage writes before its output is complete: ``<parent>/.partial/<name>``."""
    out = root / stage.output
    return out.parent / PARTIAL / out.name


def _stamp_path(stage: Stage, root: Path) -> Path:
    return root / STAMPS / f"{stage.name}.json"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def stage_lock(stage: Stage, root: Path) -> Iterator[int]:
    """Hold the stage's lock (an exclusive ``flock``) or raise ``StageBusy`` naming its holder; yields
    the lock's file descriptor, which children inherit so the lock lives as long as they do."""
    path = partial_path(stage, root).with_name(Path(stage.output).name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another process"
            raise StageBusy(f"stage {stage.name!r} is already running ({holder}; lock {path}): "
                            "wait for that pipeline to end, or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path] if path.is_file() else []


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def output_records(stage: Stage, root: Path) -> dict[str, dict]:
    """Size, modification time and sha256 of every file of the stage's outputs, by path from ``root``."""
    records = {}
    for out in stage.outs:
        for f in _files(root / out):
            st = f.stat()
            records[f.relative_to(root).as_posix()] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(f)}
    return records


def outputs_match(recorded: dict[str, dict], stage: Stage, root: Path) -> bool:
    """True when the stage's output files are exactly the recorded ones with the recorded contents
    (a file whose size and mtime are unchanged is taken as unchanged, as git and DVC do)."""
    if not all((root / out).exists() for out in stage.outs):
        return False
    now = {f.relative_to(root).as_posix(): f for out in stage.outs for f in _files(root / out)}
    if set(now) != set(recorded):
        return False
    for rel, f in now.items():
        st, rec = f.stat(), recorded[rel]
        if st.st_size != rec["size"]:
            return False
        if st.st_mtime_ns != rec["mtime_ns"] and _sha256(f) != rec["sha256"]:
            return False
    return True


def read_stamp(stage: Stage, root: Path) -> dict | None:
    try:
        return json.loads(_stamp_path(stage, root).read_text())
    except (OSError, ValueError):
        return None


def stage_is_current(stage: Stage, root: Path = ROOT) -> bool:
    """True when the stage's stamp matches its fingerprint now and its outputs are those it recorded."""
    stamp = read_stamp(stage, root)
    if stamp is None or "outputs" not in stamp or stamp.get("fingerprint") != fingerprint(stage, root):
        return False
    return outputs_match(stamp["outputs"], stage, root)


def _prepare_partial(stage: Stage, root: Path, fp: str, echo: Callable[[str], None]) -> tuple[Path, Path, dict]:
    """The partial output folder and its attempt record: a killed attempt with the same fingerprint
    is continued (its MLflow run too), anything else there is wiped."""
    partial = partial_path(stage, root)
    attempt_path = partial.with_name(partial.name + ".attempt.json")
    try:
        attempt = json.loads(attempt_path.read_text())
    except (OSError, ValueError):
        attempt = {}
    if attempt.get("fingerprint") == fp and partial.exists():
        echo(f"[{stage.name}] continuing the interrupted attempt in {partial.relative_to(root)}")
    else:
        _remove(partial)
        attempt = {"fingerprint": fp}
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial, attempt_path, attempt


def _swap_into_place(partial: Path, out: Path) -> None:
    """Replace ``out`` with ``partial`` by renames; the old output is removed only afterwards."""
    old = partial.with_name(partial.name + ".old")
    _remove(old)
    if out.exists() or out.is_symlink():
        os.replace(out, old)
    os.replace(partial, out)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _remove(old)


#: a tqdm progress line: it ends with ``[elapsed<remaining, rate]`` or ``[elapsed, rate]``
PROGRESS_LINE = re.compile(r"\[\d+:\d{2}(?::\d{2})?(?:<[^\],]*)?, [^\]]*\]$")
#: seconds between two progress lines of one stage passed to ``echo`` (the log file gets every line):
#: each echoed line is a Prefect log record, and one a second per stage kept the API server and the
#: flow at about a fifth of a core through a pipeline run
PROGRESS_EVERY_S = 15.0


class ProgressThrottle:
    """Says which output lines to echo: every line but progress lines, those at most one per
    ``every`` seconds."""

    def __init__(self, every: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.clock, self.last = every, clock, -float("inf")

    def __call__(self, line: str) -> bool:
        if not PROGRESS_LINE.search(line):
            return True
        now = self.clock()
        if now - self.last < self.every:
            return False
        self.last = now
        return True


def _run_command(stage: Stage, root: Path, partial: Path, lock_fd: int, run_id: str | None,
                 echo: Callable[[str], None], env: dict[str, str]) -> tuple[int, float, list[str]]:
    """Run the stage's command writing to ``partial``; tee its output to ``runs/logs/<stage>.log``
    and, progress lines thinned out (``ProgressThrottle``), to ``echo``."""
    argv = list(stage.argv)
    argv[argv.index("--output") + 1] = partial.relative_to(root).as_posix()
    env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    env.pop(ENV_RUN, None)
    if run_id:
        env[ENV_RUN] = run_id
    log_path = root / LOGS / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0, tail, shown = time.time(), [], ProgressThrottle()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(guarded([sys.executable, *argv]), cwd=root, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, pass_fds=(lock_fd,))
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line.rstrip()])[-20:]
            if shown(line.rstrip()):
                echo(f"[{stage.name}] {line.rstrip()}")
        rc = proc.wait()
    return rc, time.time() - t0, tail


def execute_stage(stage: Stage, root: Path = ROOT, force: bool = False, echo=print,
                  parent_run: str | None = None, env: dict[str, str] | None = None) -> dict:
    """Run one stage in ``root`` (the steps of the module docstring); ``parent_run`` is the pipeline's
    MLflow run (None: no MLflow); ``env`` is added to the command's environment. Skips a current
    stage unless ``force``; raises with the log's tail when the command fails, and ``StageBusy`` when
    another process runs the stage."""
    with stage_lock(stage, root) as lock_fd:
        if not force and stage_is_current(stage, root):
            echo(f"[{stage.name}] up to date, skipped")
            if parent_run:
                mlflow_runs.stage_skipped(parent_run, stage, root, (read_stamp(stage, root) or {}).get("mlflow_run_id"))
            return {"stage": stage.name, "skipped": True, "seconds": 0.0}
        fp = fingerprint(stage, root)
        _stamp_path(stage, root).unlink(missing_ok=True)
        partial, attempt_path, attempt = _prepare_partial(stage, root, fp, echo)
        run_id = mlflow_runs.start_stage(parent_run, stage, root, attempt.get("mlflow_run_id")) if parent_run else None
        _atomic_write(attempt_path, json.dumps({**attempt, "mlflow_run_id": run_id}))
        echo(f"[{stage.name}] {stage.cmd}")
        rc, seconds, tail = _run_command(stage, root, partial, lock_fd, run_id, echo, env or {})
        if rc != 0:
            if run_id:
                mlflow_runs.stage_failed(run_id, rc)
            raise RuntimeError(
                f"stage {stage.name!r} failed with exit code {rc} after {seconds:.1f}s; "
                f"log: {root / LOGS / f'{stage.name}.log'}\n" + "\n".join(tail)
            )
        if not partial.exists():
            raise RuntimeError(f"stage {stage.name!r} exited 0 but wrote nothing to its output ({partial})")
        _swap_into_place(partial, root / stage.output)
        if (root / ".dvc").is_dir():
            record_in_dvc(stage, root, lock_fd)
        if run_id:
            mlflow_runs.stage_done(parent_run, run_id, stage, root)
        _atomic_write(_stamp_path(stage, root), json.dumps({
            "stage": stage.name, "fingerprint": fp, "seconds": seconds, "cmd": stage.cmd,
            "mlflow_run_id": run_id, "outputs": output_records(stage, root)}, indent=1))
        attempt_path.unlink(missing_ok=True)
    return {"stage": stage.name, "skipped": False, "seconds": seconds}


def record_in_dvc(stage: Stage, root: Path, lock_fd: int) -> None:
    """Record the stage's dependencies and outputs in dvc.lock and the DVC cache (``dvc commit``).

    dvc.lock must not be git-ignored (DVC refuses); commit it to pin a data version. One ``dvc
    commit`` at a time across processes (DVC holds a repository lock and fails, not waits, on it).

    After a Prefect run, ``dvc status`` is clean and ``dvc repro`` finds nothing to do: the datasets
    are versioned whichever runner produced them.
    """
    lock = root / ".dvc" / "tmp" / "m1-commit.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        done = subprocess.run(
            guarded([sys.executable, "-m", "dvc", "commit", "--force", stage.name]),
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, pass_fds=(lock_fd,),
        )
    finally:
        os.close(fd)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage.name!r}: `dvc commit` failed:\n{done.stdout.strip()}")
