"""Docker backend of the sandbox, for production hosts (``envs.sandbox.backend: docker`` in params.yaml).

UNTESTED: no Docker engine runs where this was written, so this file has never run against one; the
local backend (``tasks.envs.sandbox.local``) is the tested one. Same interface and statuses: each run is a
fresh container with no network, a memory cap (no swap), a pids limit, an open-files and a
file-size ulimit, all capabilities dropped, no new privileges, a read-only root file system, uid
65534, and the scratch directory bind-mounted as its only writable path (plus a small /tmp). The
container is killed at the deadline and removed afterwards; stdout and stderr are read through pipes
and only their first ``max_output_bytes`` are kept.

The image needs python3 (``docker_python``) and, for the SWE task, git and patch.

Usage::

    from tasks.envs.sandbox import Limits, run
    run("print(1)", limits=Limits(backend="docker", docker_image="python:3.11-slim"))
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tasks.envs.sandbox.common import Limits, SandboxResult, read_capped, status_of, write_files


def _drain(pipe, sink: Path, cap: int) -> None:
    """Copy at most ``cap + 1`` bytes of ``pipe`` to ``sink`` and discard the rest."""
    kept = 0
    with open(sink, "wb") as f:
        for chunk in iter(lambda: pipe.read(65536), b""):
            if kept <= cap:
                f.write(chunk[:cap + 1 - kept])
                kept += len(chunk)


def run_command(argv: list[str], *, stdin: str = "", files: dict[str, str | bytes] | None = None,
                timeout_s: float, memory_mb: int, env: dict[str, str] | None = None,
                limits: Limits) -> SandboxResult:
    """``tasks.envs.sandbox.run_command`` in a container of ``limits.docker_image``."""
    docker = shutil.which("docker")
    if docker is None:
        raise RuntimeError("sandbox.backend is docker but no docker client is on PATH")
    name = f"m1-sandbox-{secrets.token_hex(8)}"
    run_dir = Path(tempfile.mkdtemp(prefix="m1-sandbox-"))
    scratch = run_dir / "scratch"
    scratch.mkdir()
    try:
        owner = 65534 if os.geteuid() == 0 else None  # the container's user must write there
        write_files(scratch, files or {}, owner)
        if owner is not None:
            os.chown(scratch, owner, owner)
        else:
            os.chmod(scratch, 0o777)
        cmd = [docker, "run", "--name", name, "-i", "--network", "none", "--user", "65534:65534",
               "--memory", f"{memory_mb}m", "--memory-swap", f"{memory_mb}m", "--cpus", "1",
               "--pids-limit", str(limits.max_processes), "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", "--read-only", "--tmpfs", "/tmp:size=16m",
               "--ulimit", f"nofile={limits.max_open_files}:{limits.max_open_files}",
               "--ulimit", f"fsize={limits.max_file_mb << 20}:{limits.max_file_mb << 20}",
               "-v", f"{scratch}:/work", "-w", "/work", "-e", "HOME=/work", "-e", "TMPDIR=/work"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        cmd += [limits.docker_image, *argv]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        readers = [threading.Thread(target=_drain, args=(p, run_dir / n, limits.max_output_bytes))
                   for p, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
        for t in readers:
            t.start()
        try:
            proc.stdin.write(stdin.encode(errors="surrogatepass"))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        timed_out = False
        try:
            proc.wait(timeout=timeout_s + 5)  # container start-up is not the program's time
        except subprocess.TimeoutExpired:
            timed_out = True
            subprocess.run([docker, "kill", name], capture_output=True)
            proc.wait()
        for t in readers:
            t.join()
        wall = time.monotonic() - t0
        state = subprocess.run([docker, "inspect", "-f", "{{.State.OOMKilled}} {{.State.StartedAt}}", name],
                               capture_output=True, text=True).stdout.split()
        oom = state[:1] == ["true"]
        # never started (no container, or a zero start time): docker itself failed, not the program
        started = len(state) == 2 and not state[1].startswith("0001-")
        out, out_cut = read_capped(run_dir / "stdout", limits.max_output_bytes)
        err, err_cut = read_capped(run_dir / "stderr", limits.max_output_bytes)
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    rc = proc.returncode
    if not started and not timed_out:  # docker run itself failed (image, daemon, flags)
        raise RuntimeError(f"docker run failed: {err.strip()}")
    # docker reports a signal death as 128 + signal
    status = "memory" if oom else status_of(-(rc - 128) if rc and rc > 128 else rc, err, timed_out)
    return SandboxResult(status, out, err, rc, wall, out_cut or err_cut)
