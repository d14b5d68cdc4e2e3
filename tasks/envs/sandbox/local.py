"""The local sandbox backend: Linux namespaces, a root of its own, cgroups and resource limits.

How a run is confined (``tasks.envs.sandbox.docker`` is the container backend, for production):

- a small launcher (this file run as a script, so no ``preexec_fn`` runs in a threaded caller)
  reads its config from a pipe (no part of it, the program's environment included, is on a
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

The launcher (internal) is ``python -I -S tasks/envs/sandbox/local.py --launch FD``, its config
JSON readable on file descriptor FD.
"""

from __future__ import annotations

import json
import os
import sys

# ---------------------------------------------------------------------------------------------
# The launcher comes first: run as a script, this file confines itself and execs the program
# before the rest of the module (and its imports) is even read.

SETUP_FAILED = 125  # launcher exit code when confinement itself failed (never the program's fault)
SCRATCH = "/scratch"  # the run's cwd inside its root
_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = (
    0x00020000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = (
    1, 2, 4, 8, 32, 1024, 2048, 4096)
_MS_REC, _MS_PRIVATE, _MS_RELATIME = 16384, 1 << 18, 1 << 21
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_DEVICES = ("null", "zero", "full", "random", "urandom")


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

    def pivot_root_here(self) -> None:
        """Make the current directory the root and detach the old one (``pivot_root(".", ".")``)."""
        machine = os.uname().machine
        if machine not in _SYS_PIVOT_ROOT:
            raise OSError(38, f"pivot_root: no syscall number known for {machine}")
        self._check(self.libc.syscall(self.ctypes.c_long(_SYS_PIVOT_ROOT[machine]), b".", b"."), "pivot_root")
        self._check(self.libc.umount2(b".", _MNT_DETACH), "umount the host's root")

    def die_with_parent(self) -> None:
        import signal

        self.libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _map_ids(inside: int, uid: int, gid: int) -> None:
    """Map ``inside`` to one outer uid and gid in a fresh user namespace (groups denied, as unprivileged)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{inside} {uid} 1"), ("gid_map", f"{inside} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _confine(config: dict, libc: _Libc) -> None:
    """In the launcher: new mount, network, IPC and PID namespaces (and without root a user
    namespace in which it is root, mapped to the caller: enough to mount)."""
    rootless = config["rootless"]
    host_uid, host_gid = os.getuid(), os.getgid()
    libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWPID | (_CLONE_NEWUSER if rootless else 0))
    if rootless:
        _map_ids(0, host_uid, host_gid)
    libc.mount(None, "/", None, _MS_REC | _MS_PRIVATE)


def _unescape(text: str) -> str:
    """A path from /proc/self/mountinfo, whose spaces and the like are written as octal escapes."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _remount_ro(path: str, libc: _Libc) -> None:
    """Remount the bind mount at ``path`` and every mount below it read-only, keeping the flags
    each source mount has (a user namespace locks them)."""
    with open("/proc/self/mountinfo") as f:
        points = [_unescape(line.split()[4]) for line in f]
    for point in dict.fromkeys(p for p in points if p == path or p.startswith(path.rstrip("/") + "/")):
        st = os.statvfs(point).f_flag
        keep = sum(ms for flag, ms in ((os.ST_NOSUID, _MS_NOSUID), (os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, _MS_NOEXEC),
                                       (os.ST_NOATIME, _MS_NOATIME), (os.ST_NODIRATIME, _MS_NODIRATIME),
                                       (os.ST_RELATIME, _MS_RELATIME)) if st & flag)
        libc.mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | keep)


def _bind_ro(root: str, path: str, libc: _Libc) -> None:
    """Show host ``path`` at the same place under ``root``, read-only (a symlink is copied as one)."""
    target = root + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(path):
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        open(target, "a").close()
    libc.mount(path, target, None, _MS_BIND | _MS_REC)
    _remount_ro(target, libc)


def _copy_in(src: str, dst: str, uid: int | None) -> None:
    """Copy the run's files from the caller's staging directory into its scratch tmpfs."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        here = dst if rel == "." else os.path.join(dst, rel)
        for name in dirnames:
            os.mkdir(os.path.join(here, name), 0o755)
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fin, open(os.path.join(here, name), "xb") as fout:
                fout.write(fin.read())
        for name in dirnames + filenames if uid is not None else []:
            os.chown(os.path.join(here, name), uid, uid)


def _build_root(config: dict, libc: _Libc) -> None:
    """In the program's process, PID 1 of the run's namespace: assemble the run's root, enter it."""
    root, uid = config["root"], None if config["rootless"] else config["uid"]
    libc.mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    for path in config["allow_ro"]:
        _bind_ro(root, path, libc)
    for path in config["hide"]:  # reference data under an allowed path: an empty read-only tmpfs over it
        libc.mount("tmpfs", root + path, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_RDONLY, "size=4k,mode=755")
    dev = root + "/dev"
    os.makedirs(dev, exist_ok=True)
    libc.mount("tmpfs", dev, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=64k,mode=755")
    for name in _DEVICES:
        open(f"{dev}/{name}", "a").close()
        libc.mount(f"/dev/{name}", f"{dev}/{name}", None, _MS_BIND)
    for name, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2")):
        os.symlink(to, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm")
    libc.mount(None, dev, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    os.makedirs(root + "/proc", exist_ok=True)
    libc.mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    for path in ("/tmp", "/var/tmp"):  # empty and read-only: TMPDIR is the scratch
        os.makedirs(root + path, exist_ok=True)
    scratch = root + SCRATCH
    os.mkdir(scratch)
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    libc.mount("tmpfs", scratch, "tmpfs", _MS_NOSUID | _MS_NODEV,
               f"size={config['scratch_mb']}m,nr_inodes={config['scratch_files']},mode=700{owner}")
    _copy_in(config["files"], scratch, uid)
    os.chdir(root)
    libc.pivot_root_here()
    os.chdir("/")
    libc.mount(None, "/", None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


def _drop(config: dict, libc: _Libc) -> None:
    """In the program's process: limits, then an unprivileged uid, then death with the launcher.

    As root: ``setuid`` to the run's fresh uid. Without root: a nested user namespace where the
    process is that uid (mapped to the outer namespace's root, i.e. the caller); its capabilities
    there are dropped by the ``execve`` that follows, as for any non-root uid.
    """
    import resource

    os.chdir(SCRATCH)
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


def _read_config(fd: int) -> dict:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return json.loads(b"".join(chunks))


def _launch(config_fd: int) -> None:
    """Confine, fork the program as PID 1 of the new PID namespace, wait, exit as it did.

    When that PID 1 exits, the kernel kills everything else in its namespace; when the caller dies
    the launcher dies (parent-death signal), and with it PID 1 and the namespace.
    """
    import resource
    import signal

    libc = _Libc()
    libc.die_with_parent()
    config = _read_config(config_fd)
    if os.getppid() != config["caller_pid"]:  # the caller died before the line above took effect
        sys.exit(SETUP_FAILED)
    # the launcher's notes to the caller: a file the program cannot reach (opened before the
    # program's root replaces the host's, closed on exec), so a program cannot fake a setup
    # failure by what it prints
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
        # to find what is left in the namespace (the host's /proc, still ours here, shows it)
        os.write(note, f"pidns {os.readlink('/proc/self/ns/pid')}\n".encode())
        try:
            for procs in config["cgroup_procs"]:  # first: all the run's memory and processes count
                with open(procs, "w") as f:
                    f.write("0")
            _build_root(config, libc)
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
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):  # die of the same signal, so the caller sees what the program saw
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler to reset
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        sys.exit(128 + sig)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__" and sys.argv[1:2] == ["--launch"]:
    _launch(int(sys.argv[2]))

# ---------------------------------------------------------------------------------------------
# The caller's side.

import functools  # noqa: E402  (after the launcher on purpose, see above)
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tasks.envs.sandbox.common import Limits, SandboxResult, read_capped, status_of, write_files

REPO_ROOT = Path(__file__).resolve().parents[3]


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
                    [sys.executable, "-I", "-S", os.path.abspath(__file__), "--launch", str(config_r)],
                    stdin=fin, stdout=fout, stderr=ferr, start_new_session=True, close_fds=True,
                    pass_fds=(config_r,), env={},
                )
            finally:
                os.close(config_r)
            _send(config_w, json.dumps(config).encode())
            timed_out = not _wait_exit(proc, timeout_s)
            note = _read_note(run_dir / "note")  # complete: written before the program starts
            # the PID namespace names the run's processes only where nothing else does (rootless,
            # no cgroup): its number is reused as soon as the namespace ends, and a scan made after
            # that killed the program of a concurrent run (12 of 300 runs under load; LOG.md)
            ns = note.get("pidns", "") if rootless and cgroup is None else ""
            _kill_all(proc, None if rootless else uid, ns)
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


def _kill_all(proc: subprocess.Popen, uid: int | None, ns: str) -> None:
    """Kill the process group, reap the launcher, then (as root) every process of the run's uid and
    every process left in the PID namespace ``ns`` (none when ``ns`` is empty); return once none is
    alive. The run's cgroup, where there is one, is emptied after this (``RunCgroup.finish``)."""
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
