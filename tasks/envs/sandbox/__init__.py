"""Run untrusted code (model-written programs, patched repositories) under OS limits.

Code and SWE rewards execute what the policy wrote (report section 4.1, "sandboxes"). ``run`` runs a
Python source string, ``run_command`` an argv (a test suite); both return a ``SandboxResult`` with
``status`` one of ``ok``, ``timeout``, ``memory``, ``error``, ``killed``, capped ``stdout`` /
``stderr``, and ``returncode``. ``Limits.backend`` picks the backend: ``local`` (namespaces, a root
of its own, a cgroup per run and rlimits, ``tasks/envs/sandbox/local.py``) or ``docker`` (a
container per run, ``docker.py``).

Usage::

    from tasks.envs.sandbox import run
    r = run("print(int(input()) * 2)", stdin="21\\n", timeout_s=5, memory_mb=256)
    r.status, r.stdout        # ('ok', '42\\n')
"""

from __future__ import annotations

import os
import sys

from tasks.envs.sandbox.common import Limits, SandboxResult

BACKENDS = ("local", "docker")


def run(code: str, *, stdin: str = "", files: dict[str, str | bytes] | None = None,
        timeout_s: float | None = None, memory_mb: int | None = None,
        limits: Limits | None = None) -> SandboxResult:
    """Run Python source ``code`` as ``main.py`` in a fresh scratch directory holding ``files``.

    The interpreter is this one, started without ``site`` (``-S``): the standard library and the
    scratch directory are importable, installed packages are not (and startup is 4x faster).
    """
    lim = limits or Limits()
    files = dict(files or {})
    files["main.py"] = code
    # the real interpreter, not a venv's link to it: the venv is hidden like the repository
    python = lim.docker_python if lim.backend == "docker" else os.path.realpath(sys.executable)
    return run_command([python, "-E", "-s", "-S", "-B", "main.py"], stdin=stdin, files=files,
                       timeout_s=timeout_s, memory_mb=memory_mb, limits=lim)


def run_command(argv: list[str], *, stdin: str = "", files: dict[str, str | bytes] | None = None,
                timeout_s: float | None = None, memory_mb: int | None = None,
                env: dict[str, str] | None = None, limits: Limits | None = None) -> SandboxResult:
    """Run ``argv`` confined, with cwd a fresh scratch directory holding ``files`` (relative paths).

    The repository and the venv are hidden inside the run: start Python as
    ``os.path.realpath(sys.executable)`` (what ``run`` does), not through the venv's link. The
    local backend's cwd is ``/scratch``, a tmpfs of ``limits.scratch_mb``.
    ``timeout_s`` / ``memory_mb`` override ``limits`` (default: ``Limits()``).
    """
    lim = limits or Limits()
    if lim.backend == "docker":
        from tasks.envs.sandbox import docker as backend
    elif lim.backend == "local":
        from tasks.envs.sandbox import local as backend
    else:
        raise ValueError(f"sandbox.backend must be one of {BACKENDS}, not {lim.backend!r}")
    return backend.run_command(
        argv, stdin=stdin, files=dict(files or {}),
        timeout_s=lim.timeout_s if timeout_s is None else timeout_s,
        memory_mb=lim.memory_mb if memory_mb is None else memory_mb, env=env, limits=lim,
    )


__all__ = ["BACKENDS", "Limits", "SandboxResult", "run", "run_command"]
