"""The sandbox's launcher: confine, fork the program as PID 1 of a new PID namespace, wait.

The caller (``tasks.envs.sandbox.local``) starts it as a fresh interpreter, ``python -I -S -c
"...import launcher; launcher.main(FD)" --launch FD``, never by forking itself (a threaded caller
cannot safely run Python between fork and exec). It reads its config from a pipe (no part of it, the
program's environment included, is on a command line or in the launcher's environment). Its own
start is on every code reward's path, so it imports nothing beyond built-in modules and ctypes:
the config is ``marshal`` data (``json`` alone costs 35 ms to import), and the module is imported,
so its bytecode is cached, rather than run as a script (LOG.md, eighth session).
"""

from __future__ import annotations

import marshal
import os
import sys

SETUP_FAILED = 125  # launcher exit code when confinement itself failed (never the program's fault)
SCRATCH = "/scratch"  # the run's cwd inside its root
_CLONE_NEWNS, _CLONE_NEWIPC, _CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = (
    0x00020000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_NOATIME, _MS_NODIRATIME, _MS_BIND = (
    1, 2, 4, 8, 32, 1024, 2048, 4096)
_MS_REC, _MS_PRIVATE, _MS_RELATIME = 16384, 1 << 18, 1 << 21
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1
_SIGKILL, _SIGSTOP = 9, 19  # Linux's numbers (the signal module imports enum: 7 ms a run)
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
        self.libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL)


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


def _become_and_kill(uid: int) -> None:
    """As root, after the program: become the run's uid and SIGKILL every process of that uid on the
    host. ``kill(-1)`` made as that uid reaches exactly that uid's processes, not the caller of it;
    the kernel walks the task list under a lock, so a fork bomb cannot outrun one pass (a second
    pass, in case the first raced a process that was mid-exec). The launcher itself does it, since
    it only has to exit afterwards: it cannot fork once the program, its PID namespace's init, is
    gone, and the caller's fork of a large process (a torch stage) cost more than the rest of the
    run. No process of the run can signal it meanwhile: they live in that namespace, where the
    launcher has no pid."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    for _ in range(2):
        try:
            os.kill(-1, _SIGKILL)
        except ProcessLookupError:
            pass


def _read_config(fd: int) -> dict:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return marshal.loads(b"".join(chunks))


def main(config_fd: int) -> None:
    """Confine, fork the program as PID 1 of the new PID namespace, wait, exit as it did.

    When that PID 1 exits, the kernel kills everything else in its namespace; when the caller dies
    the launcher dies (parent-death signal), and with it PID 1 and the namespace.
    """
    import resource

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
    if not config["rootless"]:
        _become_and_kill(config["uid"])
        os.write(note, b"uid-killed yes\n")
    if os.WIFSIGNALED(status):  # die of the same signal, so the caller sees what the program saw
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (_SIGKILL, _SIGSTOP):  # those two have no handler to reset
            import signal

            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        sys.exit(128 + sig)
    sys.exit(os.waitstatus_to_exitcode(status))
