"""What every sandbox backend shares: the limits, the result, and the scratch-file helpers.

A backend is a module with ``run_command(argv, *, stdin, files, timeout_s, memory_mb, env, limits)
-> SandboxResult`` (``tasks.envs.sandbox.local``, ``tasks.envs.sandbox.docker``); neither imports
the other.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tasks.config import Params, param


@dataclass
class SandboxResult:
    status: str  # ok | timeout | memory | error | killed
    stdout: str
    stderr: str
    returncode: int | None
    wall_s: float
    truncated: bool = False  # stdout or stderr was longer than max_output_bytes


@dataclass
class Limits(Params):
    """``envs.sandbox``: the limits of one sandboxed run (the Docker backend takes the same)."""

    SECTION: ClassVar[str] = "envs.sandbox"
    timeout_s: float = param(10.0, gt=0.0, help="wall clock per run; RLIMIT_CPU is this plus 1 s")
    memory_mb: int = param(512, ge=16, help="memory of the whole run (cgroup, scratch files included) and "
                                            "RLIMIT_AS of each process (docker: the container's memory)")
    max_processes: int = param(32, ge=1, help="processes of the whole run (cgroup pids.max) and RLIMIT_NPROC "
                                              "of the run's own uid: a fork bomb stops here")
    max_file_mb: int = param(16, ge=1, help="RLIMIT_FSIZE: any file, stdout and stderr included")
    scratch_mb: int = param(64, ge=1, help="size of the run's scratch tmpfs (its cwd, HOME and TMPDIR): "
                                           "the disk of the whole run")
    scratch_files: int = param(4096, ge=16, help="files and directories the scratch tmpfs holds")
    max_open_files: int = param(256, ge=16, help="RLIMIT_NOFILE")
    max_output_bytes: int = param(65536, ge=1, help="stdout / stderr returned to the caller, each")
    uid_base: int = param(200000, ge=1000, help="each run's uid is drawn from [uid_base, uid_base + uid_count)")
    uid_count: int = param(800000, ge=1, help="size of the uid range")
    allow_ro: tuple[str, ...] = param(
        ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/alternatives", "/etc/ld.so.cache",
         "/etc/localtime"),
        help="the only host paths a run sees (read-only, missing ones skipped), beside the interpreter's "
             "prefix, /dev/{null,zero,full,random,urandom}, its own /proc and its scratch")
    cgroups: bool = param(True, help="limit memory and processes of the whole run through a cgroup where the "
                                     "kernel offers one (v2, else v1 memory + pids); without: per process")
    backend: str = param("local", choices=("local", "docker"),
                         help="local (namespaces + rlimits) | docker (a container per run; untested here)")
    docker_image: str = param("python:3.11-slim", help="docker backend: needs python3, and git + patch for SWE")
    docker_python: str = param("python3", help="docker backend: the interpreter inside the image")

    def check(self) -> None:
        if self.uid_base + self.uid_count > 2**32 - 2:
            raise self.fail("uid_count", self.uid_count, f"uid_base + uid_count <= {2**32 - 2}")
        for path in self.allow_ro:
            if not path.startswith("/") or os.path.normpath(path) == "/":
                raise self.fail("allow_ro", list(self.allow_ro), "absolute paths below / (not / itself)")


def write_files(scratch: Path, files: dict[str, str | bytes], uid: int | None) -> None:
    """Write ``files`` under ``scratch``, owned by ``uid`` (None: leave them the caller's)."""
    root = scratch.resolve()
    for name, content in files.items():
        path = (scratch / name).resolve()
        if root not in path.parents:
            raise ValueError(f"sandbox file {name!r} is outside the scratch directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode(errors="surrogatepass") if isinstance(content, str) else content)
        for p in [path, *path.parents] if uid is not None else []:
            if p == root:
                break
            os.chown(p, uid, uid)


def read_capped(path: Path, cap: int) -> tuple[str, bool]:
    """The first ``cap`` bytes of ``path`` as text, and whether there was more."""
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    return data[:cap].decode("utf-8", errors="replace"), len(data) > cap


def status_of(rc: int | None, stderr: str, timed_out: bool, oom_killed: bool = False) -> str:
    """``SandboxResult.status`` from a return code (negative: the signal), stderr, the deadline and
    whether the kernel's OOM killer ended a process of the run."""
    if timed_out or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "timeout"
    if oom_killed or rc != 0 and any(m in stderr for m in ("MemoryError", "Cannot allocate memory", "bad_alloc")):
        return "memory"
    if rc is not None and rc < 0:
        return "killed"
    return "ok" if rc == 0 else "error"
