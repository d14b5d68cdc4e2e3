"""The local sandbox backend: Linux namespaces and resource limits, no container engine.

How a run is confined (``tasks.envs.sandbox.docker`` is the container backend, for production):

- its own session and process group, started by a small launcher (this file run as a script, so no
  ``preexec_fn`` runs in a threaded caller) that forks the program as PID 1 of a new PID namespace:
  when the program exits the kernel kills everything left in the namespace, and parent-death
  signals chain caller -> launcher -> program, so a caller killed mid-run leaves nothing running;
- new network namespace (only a downed loopback: no connection leaves it, not even to 127.0.0.1);
- new mount namespace in which ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run/lock``, ``/root``,
  ``/home``, this repository and the venv are empty read-only tmpfs, with only the scratch
  directory (and the interpreter's prefix, read-only) bound back in: the world-writable
  directories, root's files and the reference data (HumanEval solutions, SWE fixes) are gone;
- an unprivileged uid: as root, a fresh uid per run (no passwd entry, no groups), so
  ``RLIMIT_NPROC`` counts only this run's processes and one ``kill(-1, SIGKILL)`` made as that uid
  ends every process it started; without root, the launcher enters a user namespace (where it may
  mount) and the program a nested one where it is not root, ``RLIMIT_NPROC`` then counts the
  caller's own processes too (the limit is raised by their number);
- ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``,
  no core files, and a wall-clock deadline;
- stdout and stderr go to files (bounded by ``RLIMIT_FSIZE``), of which the first
  ``max_output_bytes`` are read back, so a flood of output costs the caller nothing.

The tests run as root; the user-namespace path was checked by hand as uid 1000 (every attack of
tests/test_sandbox.py, see docs/LOG.md). Hosts that forbid unprivileged user namespaces (some
AppArmor profiles) get a RuntimeError naming the failed call.

The launcher (internal) is ``python -I -S tasks/envs/sandbox/local.py --launch CONFIG_JSON``.
"""

from __future__ import annotations

import json
import os
import sys

# ---------------------------------------------------------------------------------------------
# The launcher comes first: run as a script, this file confines itself and execs the program
# before the rest of the module (and its imports) is even read.

SETUP_FAILED = 125  # launcher exit code when confinement itself failed (never the program's fault)
_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = (
    1, 2, 4, 8, 32, 1024, 2048, 4096)
_MS_REC, _MS_PRIVATE, _MS_RELATIME = 16384, 1 << 18, 1 << 21
_PR_SET_PDEATHSIG = 1


class _Libc:
    """The few libc calls Python 3.11's os module lacks, raising OSError like os does."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)

    def _check(self, ret: int, what: str) -> None:
        if ret != 0:
            errno = self.ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def unshare(self, flags: int) -> None:
        self._check(self.libc.unshare(flags), "unshare")

    def mount(self, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        enc = (lambda s: s.encode() if s is not None else None)
        self._check(self.libc.mount(enc(src), enc(dst), enc(fstype), self.ctypes.c_ulong(flags), enc(data)),
                    f"mount {dst}")

    def die_with_parent(self) -> None:
        import signal

        self.libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _map_ids(inside: int, uid: int, gid: int) -> None:
    """Map ``inside`` to one outer uid and gid in a fresh user namespace (groups denied, as unprivileged)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{inside} {uid} 1"), ("gid_map", f"{inside} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _confine(config: dict, libc: _Libc) -> None:
    """In the launcher: new mount, network and PID namespaces; mask and bind directories.

    As root that is all; without root the launcher first enters a user namespace in which it is
    root (mapped to the caller's uid), which is enough to mount tmpfs and bind directories.
    """
    rootless = config["rootless"]
    host_uid, host_gid = os.getuid(), os.getgid()
    libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | (_CLONE_NEWUSER if rootless else 0))
    if rootless:
        _map_ids(0, host_uid, host_gid)
    libc.mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    under = (lambda p, d: p == d or p.startswith(d.rstrip("/") + "/"))
    masks = [d for d in dict.fromkeys(config["mask_dirs"]) if os.path.isdir(d) and not os.path.islink(d)]
    masks = [d for d in masks if not any(under(d, m) and d != m for m in masks)]  # outermost only
    under_mask = (lambda p: any(under(p, m) for m in masks))
    # open what must stay visible before the masks hide it; bind it back at the same path after
    binds = [(config["scratch"], False)] + [(p, True) for p in dict.fromkeys(config["binds_ro"]) if under_mask(p)]
    fds = [(os.open(p, os.O_PATH), p, ro, os.statvfs(p).f_flag) for p, ro in binds]
    for d in masks:
        libc.mount("tmpfs", d, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=755")
    for fd, path, ro, st in fds:
        os.makedirs(path, exist_ok=True)
        libc.mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        if ro:  # a remount must keep the flags the source mount has (locked in a user namespace)
            keep = sum(ms for st_flag, ms in ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV),
                                              (os.ST_NOEXEC, _MS_NOEXEC), (os.ST_NOATIME, _MS_NOATIME),
                                              (os.ST_NODIRATIME, _MS_NODIRATIME), (os.ST_RELATIME, _MS_RELATIME))
                       if st & st_flag)
            libc.mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | keep)
        os.close(fd)
    for d in masks:  # read-only once the bind targets exist (without root the program owns them)
        libc.mount(None, d, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def _drop(config: dict, libc: _Libc) -> None:
    """In the program's process: limits, then an unprivileged uid, then death with the launcher.

    As root: ``setuid`` to the run's fresh uid. Without root: a nested user namespace where the
    process is that uid (mapped to the outer namespace's root, i.e. the caller); its capabilities
    there are dropped by the ``execve`` that follows, as for any non-root uid.
    """
    import resource

    os.chdir(config["scratch"])
    for name, value in config["rlimits"].items():
        kind = getattr(resource, f"RLIMIT_{name}")
        hard = value + 1 if name == "CPU" else value  # SIGXCPU at the soft limit, SIGKILL a second later
        resource.setrlimit(kind, (value, hard))
    if config["rootless"]:
        libc.unshare(_CLONE_NEWUSER)
        _map_ids(config["uid"], 0, 0)
    else:
        os.setgroups([])
        os.setgid(config["uid"])
        os.setuid(config["uid"])
    libc.die_with_parent()  # last: changing credentials clears it


def _launch(config: dict) -> None:
    """Confine, fork the program as PID 1 of the new PID namespace, wait, exit as it did.

    When that PID 1 exits, the kernel kills everything else in its namespace; when the caller dies
    the launcher dies (parent-death signal), and with it PID 1 and the namespace.
    """
    import resource
    import signal

    libc = _Libc()
    libc.die_with_parent()
    if os.getppid() != config["caller_pid"]:  # the caller died before the line above took effect
        sys.exit(SETUP_FAILED)
    # the launcher's notes to the caller: a file the program cannot reach (opened before the masks
    # hide it, closed on exec), so a program cannot fake a setup failure by what it prints
    note = os.open(config["note_file"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def fail(exc: Exception) -> None:
        os.write(note, f"setup-failed {type(exc).__name__}: {exc}\n".encode())
        os._exit(SETUP_FAILED)

    try:
        _confine(config, libc)
    except Exception as exc:  # noqa: BLE001  (reported to the caller as a setup failure)
        fail(exc)
    alive_r, alive_w = os.pipe()  # the launcher holds the write end: EOF means it has died
    pid = os.fork()
    if pid == 0:
        import select

        os.close(alive_w)
        try:
            _drop(config, libc)
        except Exception as exc:  # noqa: BLE001
            fail(exc)
        if select.select([alive_r], [], [], 0)[0]:  # the launcher died before our death signal was set
            os._exit(SETUP_FAILED)
        try:
            os.execve(config["exe"], config["argv"], config["env"])
        except OSError as exc:
            sys.stderr.write(f"cannot run {config['argv'][0]!r}: {exc}\n")
            sys.stderr.flush()
            os._exit(127)
    os.close(alive_r)
    os.write(note, f"pidns {os.readlink(f'/proc/{pid}/ns/pid')}\n".encode())  # to find what is left in it
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):  # die of the same signal, so the caller sees what the program saw
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        sys.exit(128 + sig)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__" and sys.argv[1:2] == ["--launch"]:
    _launch(json.loads(sys.argv[2]))

# ---------------------------------------------------------------------------------------------
# The caller's side.

import secrets  # noqa: E402  (after the launcher on purpose, see above)
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tasks.envs.sandbox.common import Limits, SandboxResult, read_capped, status_of, write_files

REPO_ROOT = Path(__file__).resolve().parents[3]


def run_command(argv: list[str], *, stdin: str, files: dict[str, str | bytes], timeout_s: float,
                memory_mb: int, env: dict[str, str] | None, limits: Limits) -> SandboxResult:
    """``tasks.envs.sandbox.run_command`` confined by namespaces and rlimits on this host.

    Raises RuntimeError when the confinement itself cannot be set up (namespaces not allowed).
    """
    lim = limits
    rootless = os.geteuid() != 0
    uid = lim.uid_base + secrets.randbelow(lim.uid_count)
    # without root, RLIMIT_NPROC counts all the caller's processes: allow for those already running
    nproc = lim.max_processes + (len(live_processes(os.getuid())) if rootless else 0)
    run_dir = Path(tempfile.mkdtemp(prefix="m1-sandbox-"))  # 0700: outputs live beside scratch
    scratch = run_dir / "scratch"
    scratch.mkdir()
    try:
        write_files(scratch, files, None if rootless else uid)
        if not rootless:
            os.chown(scratch, uid, uid)
        (run_dir / "stdin").write_bytes(stdin.encode(errors="surrogatepass"))
        child_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch), "TMPDIR": str(scratch),
                     "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", **(env or {})}
        exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=child_env["PATH"]) or argv[0]
        config = {
            "uid": uid, "rootless": rootless, "note_file": str(run_dir / "note"), "caller_pid": os.getpid(), "argv": list(argv), "exe": exe, "scratch": str(scratch),
            "env": child_env,
            "binds_ro": [os.path.realpath(sys.base_prefix)],
            # the repository and the venv hold reference data (HumanEval solutions, SWE fixes)
            "mask_dirs": [*lim.mask_dirs, str(REPO_ROOT), *([sys.prefix] if sys.prefix != sys.base_prefix else [])],
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
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), "--launch", json.dumps(config)],
                stdin=fin, stdout=fout, stderr=ferr, start_new_session=True, close_fds=True,
            )
            timed_out = not _wait_exit(proc, timeout_s)
            note = _read_note(run_dir / "note")  # complete: written before the program starts
            _kill_all(proc, None if rootless else uid, note.get("pidns", ""))
            wall = time.monotonic() - t0
        out, out_cut = read_capped(run_dir / "stdout", lim.max_output_bytes)
        err, err_cut = read_capped(run_dir / "stderr", lim.max_output_bytes)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    rc = proc.returncode
    if "setup-failed" in note:
        raise RuntimeError(f"sandbox setup failed: {note['setup-failed']}")
    return SandboxResult(status_of(rc, err, timed_out), out, err, rc, wall, out_cut or err_cut)


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


def _kill_all(proc: subprocess.Popen, uid: int | None, ns: str) -> None:
    """Kill the process group, reap the launcher, then every process left in the run's PID
    namespace and (as root) every process of the run's uid; return once none is alive."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if uid is not None:
        # kill(-1) made as the run's uid reaches exactly that uid's processes (escaped sessions,
        # double forks); the kernel walks the task list under a lock, so a fork bomb cannot outrun
        # one pass (a second pass, in case the first raced a process that was mid-exec)
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
