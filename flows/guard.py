"""Run a command that dies with the process that started it (Linux ``PR_SET_PDEATHSIG``).

    python -m flows.guard PARENT_PID COMMAND [ARG ...]

The flow starts every child (stage commands, ``dvc commit``, its Prefect API server) through this,
so a ``kill -9`` of the flow leaves no stage writing into an output and no server running orphaned.
The death signal is set here, then the command replaces this process (``exec`` keeps it); if the
parent died before the signal was armed, the command never starts. Elsewhere than Linux the
command runs unguarded.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        raise SystemExit("usage: python -m flows.guard PARENT_PID COMMAND [ARG ...]")
    parent, command = int(argv[0]), argv[1:]
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the signal was armed
            raise SystemExit(f"flows.guard: parent {parent} is gone; not starting {command[0]}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
