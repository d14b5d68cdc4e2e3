"""The local sandbox backend: Linux namespaces, a root of its own, cgroups and resource limits.

How a run is confined (``tasks.envs.sandbox.docker`` is the container backend, for production):

- a small launcher (``launcher.py`` in a fresh interpreter, so no ``preexec_fn`` runs in a
  threaded caller) reads its config from a pipe (no part of it, the program's environment included, is on a
  command line or in the launcher's environment), enters new mount, network, IPC and PID
  namespaces, and forks the program as PID 1 of the new PID namespace: when the program exits the
  kernel kills everything left in the namespace, and parent-death signals chain caller ->
  launcher -> program, so a caller killed mid-run leaves nothing running;
- a root of its own, listing what is allowed rather than what is denied: an empty read-only tmpfs
  holding only the paths of ``Limits.allow_ro`` (bound read-only; by default ``/usr``, the
  merged-usr links, the dynamic linker's cache), the interpreter's prefix, ``/dev/{null, zero,
  full, random, urandom}``, a ``/proc`` of the run's own PID namespace (it shows the run's
  processes only), and ``/scratch``; the program's process enters it with ``pivot_root`` and the
  host's tree is detached. Other checkouts, unix sockets, ``/etc/shadow``, ``/run``, ``/home`` and
  the host's ``/tmp`` do not exist inside; this repository and the venv are hidden even when they
  lie under an allowed path (HumanEval's solutions and the SWE fixes live there);
- ``/scratch`` (cwd, ``HOME``, ``TMPDIR``) is a tmpfs of ``scratch_mb`` and ``scratch_files``
  holding the run's files: the disk of the whole run, gone with it;
- no network (only a downed loopback: no connection leaves, not even to 127.0.0.1, and no abstract
  unix socket is reachable) and SysV shared memory, semaphores and message queues of its own,
  destroyed with the run;
- a cgroup per run where the kernel offers one (``cgroup_support()``: v2 with the memory and pids
  controllers, else the v1 memory and pids hierarchies, each made under the caller's own cgroup):
  ``memory_mb`` (swap included) and ``max_processes`` count the whole run, scratch files included,
  and an OOM kill makes the status ``memory``. Fallback where none is usable (or ``cgroups:
  false``): memory is limited per process only (``RLIMIT_AS``), processes per run uid
  (``RLIMIT_NPROC``), so a run may hold ``max_processes x memory_mb``;
- an unprivileged uid: as root, a fresh uid per run (no passwd entry, no groups), so
  ``RLIMIT_NPROC`` counts only this run's processes and one ``kill(-1, SIGKILL)`` made as that uid
  ends every process it started; without root, the launcher enters a user namespace (where it may
  mount) and the program a nested one where it is not root, ``RLIMIT_NPROC`` then counts the
  caller's own processes too (the limit is raised by their number);
- ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``,
  no core files, and a wall-clock deadline;
- stdout and stderr go to files (bounded by ``RLIMIT_FSIZE``), of which the first
  ``max_output_bytes`` are read back, so a flood of output costs the caller nothing.

The tests run as root; the user-namespace path was checked by hand as uid 1000 (docs/LOG.md).
Hosts that forbid unprivileged user namespaces (some AppArmor profiles) get a RuntimeError naming
the failed call.

The launcher (internal, ``tasks/envs/sandbox/launcher.py``) reads its config, ``marshal`` data,
on a file descriptor.
"""

from __future__ import annotations

import functools
import marshal
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tasks.envs.sandbox.common import Limits, SandboxResult, read_capped, status_of, write_files
from tasks.envs.sandbox.launcher import SCRATCH, _unescape

REPO_ROOT = Path(__file__).resolve().parents[3]
# the launcher imported from its directory (bytecode cached), not run as a script (compiled each run)
_LAUNCH = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import launcher; "
           "launcher.main(int(sys.argv[2]))")


def _visible_paths(lim: Limits) -> tuple[list[str], list[str]]:
    """The host paths a run sees (outermost first, existing only) and the ones hidden under them."""
    interpreter = os.path.realpath(sys.base_prefix)
    wanted = sorted({os.path.normpath(p) for p in lim.allow_ro if os.path.lexists(p)} | {interpreter})
    under = (lambda p, d: p == d or p.startswith(d.rstrip("/") + "/"))
    allowed = [p for p in wanted if not any(under(p, d) and p != d for d in wanted)]
    secret = [str(REPO_ROOT), *([sys.prefix] if sys.prefix != sys.base_prefix else [])]
    real_allowed = [os.path.realpath(p) for p in allowed]
    hide = [p for p in map(os.path.realpath, secret)
            if any(under(p, d) for d in real_allowed) and not under(interpreter, p)]
    return allowed, hide


def run_command(argv: list[str], *, stdin: str, files: dict[str, str | bytes], timeout_s: float,
                memory_mb: int, env: dict[str, str] | None, limits: Limits) -> SandboxResult:
    """``tasks.envs.sandbox.run_command`` confined by namespaces, a cgroup and rlimits on this host.

    Raises ValueError when ``files`` do not fit in the scratch, RuntimeError when the confinement
    itself cannot be set up (namespaces not allowed).
    """
    lim = limits
    size = sum(len(c.encode(errors="surrogatepass") if isinstance(c, str) else c) for c in files.values())
    if size > lim.scratch_mb << 20:
        raise ValueError(f"sandbox files take {size / 2**20:.1f} MB; envs.sandbox.scratch_mb is {lim.scratch_mb}")
    rootless = os.geteuid() != 0
    uid = lim.uid_base + secrets.randbelow(lim.uid_count)
    # without root, RLIMIT_NPROC counts all the caller's processes: allow for those already running
    nproc = lim.max_processes + (len(live_processes(os.getuid())) if rootless else 0)
    run_dir = Path(tempfile.mkdtemp(prefix="m1-sandbox-"))  # 0700: outputs live beside the staged files
    (run_dir / "files").mkdir()
    (run_dir / "root").mkdir()
    cgroup = None
    try:
        if lim.cgroups and cgroup_support().kind:
            try:
                cgroup = RunCgroup.create(cgroup_support(), memory_mb, lim.max_processes)
            except OSError as e:
                raise RuntimeError(f"sandbox setup failed: cannot make the run's cgroup: {e}") from e
        write_files(run_dir / "files", files, None)
        (run_dir / "stdin").write_bytes(stdin.encode(errors="surrogatepass"))
        child_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": SCRATCH, "TMPDIR": SCRATCH,
                     "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", **(env or {})}
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=child_env["PATH"]) or argv[0]
        allowed, hide = _visible_paths(lim)
        config = {
            "uid": uid, "rootless": rootless, "note_file": str(run_dir / "note"), "caller_pid": os.getpid(),
            "argv": list(argv), "exe": exe, "env": child_env, "root": str(run_dir / "root"),
            "files": str(run_dir / "files"), "allow_ro": allowed, "hide": hide,
            "scratch_mb": lim.scratch_mb, "scratch_files": lim.scratch_files,
            "cgroup_procs": cgroup.procs if cgroup else [],
            "rlimits": {
                "AS": memory_mb << 20,
                "CPU": int(timeout_s) + 1,
                "NPROC": nproc,
                "FSIZE": lim.max_file_mb << 20,
                "NOFILE": lim.max_open_files,
                "CORE": 0,
            },
        }
        with open(run_dir / "stdin", "rb") as fin, open(run_dir / "stdout", "wb") as fout, \
                open(run_dir / "stderr", "wb") as ferr:
            t0 = time.monotonic()
            config_r, config_w = os.pipe()
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _LAUNCH, "--launch", str(config_r)],
                    stdin=fin, stdout=fout, stderr=ferr, start_new_session=True, close_fds=True,
                    pass_fds=(config_r,), env={},
                )
            finally:
                os.close(config_r)
            _send(config_w, marshal.dumps(config))
            timed_out = not _wait_exit(proc, timeout_s)
            note = _read_note(run_dir / "note")  # its setup part is complete: written before the program starts
            # the PID namespace names the run's processes only where nothing else does (rootless,
            # no cgroup): its number is reused as soon as the namespace ends, and a scan made after
            # that killed the program of a concurrent run (12 of 300 runs under load; LOG.md)
            ns = note.get("pidns", "") if rootless and cgroup is None else ""
            # as root without a cgroup the uid names them; a cgroup does by itself (its processes
            # cannot leave it), and scanning /proc for the uid cost 5 ms a run
            by_uid = uid if not rootless and cgroup is None else None
            _kill_all(proc, by_uid, ns, uid_killed="uid-killed" in note)
            oom_killed = cgroup.finish() if cgroup else False
            wall = time.monotonic() - t0
        out, out_cut = read_capped(run_dir / "stdout", lim.max_output_bytes)
        err, err_cut = read_capped(run_dir / "stderr", lim.max_output_bytes)
    finally:
        if cgroup:
            cgroup.remove()
        shutil.rmtree(run_dir, ignore_errors=True)
    rc = proc.returncode
    if "setup-failed" in note:
        raise RuntimeError(f"sandbox setup failed: {note['setup-failed']}")
    return SandboxResult(status_of(rc, err, timed_out, oom_killed), out, err, rc, wall, out_cut or err_cut)


# ---------------------------------------------------------------------------------------------
# A cgroup per run: cgroup_support() says what this host offers, and why; RunCgroup makes one
# run's cgroup, under the caller's own cgroup in each hierarchy (so the caller's limits still
# apply above the run's); the program's process joins it before it does anything else. A caller
# killed mid-run leaves an empty cgroup behind; the next run removes those whose caller is gone
# (their names carry the caller's pid).

CGROUP_PREFIX = "m1-sandbox-"


@dataclass(frozen=True)
class CgroupSupport:
    kind: str | None  # "v2", "v1" or None (no cgroup: the rlimit fallback)
    why: str
    mounts: tuple[tuple[str, str, str], ...] = field(default=(), repr=False)  # (controller, mount point, mount root)


def _mounts() -> list[tuple[str, str, str, str]]:
    """(fstype, mount point, mount root, super options) of every cgroup mount."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields, (fstype, _source, options) = left.split(), right.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((fstype, _unescape(fields[4]), _unescape(fields[3]), options))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup per controller ("" for v2), from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                paths[c] = path
    return paths


def _base(point: str, root: str, own: str) -> Path | None:
    """The directory of this process's cgroup in a hierarchy mounted at ``point`` from ``root``."""
    if root != "/" and not (own == root or own.startswith(root.rstrip("/") + "/")):
        return None
    return Path(point + own[len(root.rstrip("/")):]) if root != "/" else Path(point + own.rstrip("/"))


def _probe(bases: list[tuple[str, Path | None]]) -> None:
    """Make and remove a cgroup under each base with the limits a run gets; OSError if not allowed."""
    RunCgroup(bases, 64, 4).remove()


@functools.lru_cache(maxsize=1)
def cgroup_support() -> CgroupSupport:
    """What this host offers a run (probed once per process by making and removing a cgroup)."""
    try:
        mounts, own = _mounts(), _own_paths()
    except OSError as e:
        return CgroupSupport(None, f"cannot read this process's cgroups ({e})")
    tried = []
    v2 = [(point, root) for fstype, point, root, _ in mounts if fstype == "cgroup2"]
    if v2 and "" in own:
        point, root = v2[0]
        base = _base(point, root, own[""])
        try:
            if base is None:
                raise OSError(f"this process's cgroup {own['']} is outside the mount at {point}")
            available = (base / "cgroup.controllers").read_text().split()
            if not {"memory", "pids"} <= set(available):
                raise OSError(f"controllers at {base}: {' '.join(available) or 'none'}; memory and pids needed")
            enabled = (base / "cgroup.subtree_control").read_text().split()
            if not {"memory", "pids"} <= set(enabled):
                (base / "cgroup.subtree_control").write_text("+memory +pids")
            _probe([("v2", base)])
            return CgroupSupport("v2", f"cgroup v2 at {base}: memory.max, memory.swap.max and pids.max per run",
                                 (("v2", str(point), root),))
        except OSError as e:
            tried.append(f"v2: {e}")
    v1 = {c: (point, root) for fstype, point, root, opts in mounts if fstype == "cgroup"
          for c in opts.split(",") if c in ("memory", "pids")}
    if {"memory", "pids"} <= set(v1) and {"memory", "pids"} <= set(own):
        try:
            bases = []
            for c in ("memory", "pids"):
                base = _base(*v1[c], own[c])
                if base is None:
                    raise OSError(f"this process's {c} cgroup {own[c]} is outside the mount at {v1[c][0]}")
                bases.append((c, base))
            _probe(bases)
            return CgroupSupport("v1", "cgroup v1 memory and pids hierarchies: memory.limit_in_bytes (and memsw) and "
                                       "pids.max per run, under this process's own cgroups",
                                 tuple((c, v1[c][0], v1[c][1]) for c in ("memory", "pids")))
        except OSError as e:
            tried.append(f"v1: {e}")
    else:
        tried.append("v1: no memory and pids hierarchies mounted")
    return CgroupSupport(None, "no usable cgroup (" + "; ".join(tried) + "): memory is limited per process "
                               "(RLIMIT_AS), processes per run uid (RLIMIT_NPROC)")


class RunCgroup:
    """One run's cgroup: a directory under each of ``bases`` ((controller, this process's cgroup
    directory) with controller ``v2``, ``memory`` or ``pids``) holding the run's limits."""

    @classmethod
    def create(cls, support: CgroupSupport, memory_mb: int, max_processes: int) -> RunCgroup:
        """The run's cgroup in the hierarchies ``support`` found, under this process's cgroups."""
        own = _own_paths()
        return cls([(c, _base(point, root, own["" if c == "v2" else c])) for c, point, root in support.mounts],
                   memory_mb, max_processes)

    def __init__(self, bases: list[tuple[str, Path | None]], memory_mb: int, max_processes: int):
        name = f"{CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.dirs: list[tuple[str, Path]] = []
        try:
            for controller, base in bases:
                if base is None:
                    raise OSError(f"this process left the cgroup its {controller} hierarchy was probed in")
                _sweep(base)
                path = base / name
                path.mkdir()
                self.dirs.append((controller, path))
                limits = {
                    "v2": [("memory.max", memory_mb << 20), ("memory.swap.max", 0), ("pids.max", max_processes)],
                    "memory": [("memory.limit_in_bytes", memory_mb << 20), ("memory.memsw.limit_in_bytes", memory_mb << 20)],
                    "pids": [("pids.max", max_processes)],
                }[controller]
                for file, value in limits:
                    if (path / file).exists():  # no swap accounting: no memsw / swap.max file
                        (path / file).write_text(str(value))
        except OSError:
            self.remove()
            raise

    @property
    def procs(self) -> list[str]:
        """The files a process writes ``0`` to, to join."""
        return [str(path / "cgroup.procs") for _, path in self.dirs]

    def finish(self) -> bool:
        """Kill every process left in the run's cgroup; whether the OOM killer ended one of them."""
        for _, path in self.dirs:
            if (path / "cgroup.kill").exists():
                (path / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            left = [int(p) for _, path in self.dirs for p in (path / "cgroup.procs").read_text().split()]
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.002)
        for controller, path in self.dirs:
            events = {"v2": "memory.events", "memory": "memory.oom_control"}.get(controller)
            if events and (path / events).exists():
                counts = dict(line.split() for line in (path / events).read_text().splitlines())
                if int(counts.get("oom_kill", 0)):
                    return True
        return False

    def remove(self) -> None:
        """Delete the run's cgroup directories (the kernel refuses while a process is inside)."""
        for _, path in self.dirs:
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)
        self.dirs = []


def _sweep(base: Path) -> None:
    """Remove the empty cgroups of runs whose caller died (a killed caller cannot remove its own)."""
    for entry in base.glob(f"{CGROUP_PREFIX}*"):
        pid = entry.name[len(CGROUP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            entry.rmdir()
        except OSError:
            pass


def _send(fd: int, data: bytes) -> None:
    """Write the launcher's config to its pipe and close it (a launcher that died early: nothing to do)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def _wait_exit(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Whether the process exited within ``timeout_s``; a pidfd wakes us at once (Popen.wait polls)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # kernels before 5.3
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)


def _read_note(path: Path) -> dict[str, str]:
    """The launcher's notes: ``pidns`` (the program's PID namespace), ``setup-failed`` (why)."""
    if not path.exists():
        return {}
    return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)


def _kill_all(proc: subprocess.Popen, uid: int | None, ns: str, uid_killed: bool = False) -> None:
    """Kill the process group, reap the launcher, then (as root) every process of the run's uid and
    every process left in the PID namespace ``ns`` (none when ``ns`` is empty); return once none is
    alive. ``uid_killed``: the launcher already sent the uid's processes SIGKILL after the program
    ended (``launcher._become_and_kill``); a launcher that was killed (a timeout) did not. The run's cgroup,
    where there is one, is emptied after this (``RunCgroup.finish``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if uid is not None and not uid_killed:
        # kill(-1) made as the run's uid reaches exactly that uid's processes (see launcher._become_and_kill)
        subprocess.run(["/bin/sh", "-c", "kill -9 -1; kill -9 -1"], user=uid, group=uid, extra_groups=[],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # SIGKILL lands asynchronously
        left = (live_processes(uid) if uid is not None else []) + (_in_namespace(ns) if ns else [])
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.002)


def _in_namespace(ns: str) -> list[int]:
    """Pids of live processes in the PID namespace ``ns`` (``pid:[inode]``) that we may inspect."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == ns and not _zombie(entry):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _zombie(pid: str) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")


def live_processes(uid: int) -> list[int]:
    """Pids of processes owned by ``uid`` that are not zombies (a zombie holds nothing but its pid)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if int(status["Uid"].split()[0]) == uid and not status["State"].strip().startswith(("Z", "X")):
            pids.append(int(entry))
    return pids
