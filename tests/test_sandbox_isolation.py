"""What one sandboxed run can see of the host and of other runs (issue 17 part 5), each case an
attack that runs for real: SysV IPC, /proc, the launcher's command line and environment, disk and
files in scratch, paths outside an allow-list (another checkout, a 0777 unix socket), and memory and
processes summed over the whole run."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks.envs.sandbox import Limits, run, run_command
from tasks.envs.sandbox import local

LIM = Limits(timeout_s=10, memory_mb=256, max_processes=16, max_file_mb=4, max_output_bytes=4096,
             scratch_mb=8, scratch_files=512)
PYTHON = os.path.realpath(sys.executable)
REPO = Path(__file__).resolve().parents[1]
CGROUP = local.cgroup_support()
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="makes files outside the user's reach to attack; run as root")
needs_cgroup = pytest.mark.skipif(CGROUP.kind is None, reason=f"no cgroup for a whole run here: {CGROUP.why}")

IPC_CREAT = 0o1000
IPC_RMID = 0


def libc():
    return ctypes.CDLL(None, use_errno=True)


def test_sysv_ipc_does_not_outlive_a_run():
    shm_key, msg_key = 0x4D310000 + os.getpid() % 65536, 0x4D320000 + os.getpid() % 65536
    code = ("import ctypes\nc = ctypes.CDLL(None, use_errno=True)\n"
            f"shm = c.shmget({shm_key}, 4096, 0o1666)\nmsg = c.msgget({msg_key}, 0o1666)\n"
            "print(shm >= 0, msg >= 0)")
    try:
        r = run(code, limits=LIM)
        assert (r.status, r.stdout) == ("ok", "True True\n")  # the run could make them...
        c = libc()
        assert c.shmget(shm_key, 0, 0) == -1 and ctypes.get_errno() == 2  # ...and they went with it (ENOENT)
        assert c.msgget(msg_key, 0) == -1 and ctypes.get_errno() == 2
        r = run(f"import ctypes\nc = ctypes.CDLL(None)\nprint(c.shmget({shm_key}, 0, 0), c.msgget({msg_key}, 0))",
                limits=LIM)
        assert r.stdout == "-1 -1\n"  # nor does the next run find them
    finally:  # what a leaky sandbox left behind
        c = libc()
        if (shm := c.shmget(shm_key, 0, 0)) >= 0:
            c.shmctl(shm, IPC_RMID, None)
        if (msg := c.msgget(msg_key, 0)) >= 0:
            c.msgctl(msg, IPC_RMID, None)


LIST_PROC = ("import os\nseen = []\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n"
             "        try:\n            seen.append(open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ').decode())\n"
             "        except OSError:\n            pass\nprint(len(seen))\nprint('\\n'.join(seen))")


def test_proc_shows_only_the_run():
    marker = f"host-process-{os.getpid()}"
    import subprocess

    host = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)", marker])
    try:
        r = run(LIST_PROC, limits=LIM)
        count, *cmdlines = r.stdout.splitlines()
        assert r.status == "ok" and marker not in r.stdout
        assert int(count) == 1 and "main.py" in cmdlines[0]  # the program itself, as PID 1
        r = run("import os\nprint(os.getpid(), open('/proc/1/environ').read().count('\\0'))", limits=LIM)
        assert r.stdout.split()[0] == "1"
    finally:
        host.kill()
        host.wait()


def test_runs_do_not_see_each_other_nor_the_launcher_config():
    token = f"secret-{os.getpid()}-{time.time_ns()}"
    first: list = []
    t = threading.Thread(target=lambda: first.append(
        run_command([PYTHON, "-c", "import time; time.sleep(3)"], env={"M1_TOKEN": token}, limits=LIM)))
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not local_programs_with_env(token) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert local_programs_with_env(token), "the first run never started"
        # on the host: the token is in the program's own environment, in no command line, and not in
        # the launcher's environment (the config, env included, went through a pipe)
        assert not any(token in cmd for cmd in cmdlines().values())
        launchers = [pid for pid, cmd in cmdlines().items() if "--launch" in cmd and "sandbox" in cmd]
        assert launchers and not any(token in environ(pid) for pid in launchers)
        # in a second run: nothing of the first
        r = run(LIST_PROC + "\nimport os\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n"
                f"        print({token!r} in open(f'/proc/{{p}}/environ').read())", limits=LIM)
        assert r.status == "ok" and token not in r.stdout
        assert r.stdout.splitlines()[0] == "1" and "True" not in r.stdout
    finally:
        t.join()
    assert first[0].status == "ok"


def test_concurrent_runs_under_load_do_not_end_each_other():
    # a PID namespace's number is reused as soon as it ends: a run that looked for leftovers by that
    # number once it was over killed another run's program (12 of 300 runs on 2 threads, with three
    # busy processes on 2 cores, came back "killed" after 0.1 s)
    from concurrent.futures import ThreadPoolExecutor

    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda i: run(f"print({i} * 2)", limits=LIM), range(200)))
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    bad = [(i, r.status, r.stderr[-200:]) for i, r in enumerate(results) if (r.status, r.stdout) != ("ok", f"{i * 2}\n")]
    assert bad == []


def cmdlines() -> dict[int, str]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def local_programs_with_env(token: str) -> list[int]:
    return [pid for pid in cmdlines() if token in environ(pid)]


def test_scratch_is_a_tmpfs_capped_in_bytes_and_files():
    # 1 MB files (each under max_file_mb) until the scratch is full, then empty files until no inode is left
    code = ("import os\nn = 0\ntry:\n    for n in range(64):\n        with open(f'big{n}', 'wb') as f:\n"
            "            f.write(b'x' * (1 << 20))\n"
            "except OSError as e:\n    print('bytes', n, e.errno)\nfor i in range(n + 1):\n"
            "    os.remove(f'big{i}')\nk = 0\n"
            "try:\n    for k in range(100000):\n        open(f'f{k}', 'w').close()\n"
            "except OSError as e:\n    print('files', k, e.errno)\n"
            "print([l.split()[4:9] for l in open('/proc/self/mountinfo') if l.split()[4] == os.getcwd()])")
    r = run(code, limits=LIM)
    lines = r.stdout.splitlines()
    assert r.status == "ok", r.stderr
    assert lines[0].split()[0] == "bytes" and int(lines[0].split()[1]) < LIM.scratch_mb and lines[0].split()[2] == "28"
    assert lines[1].split()[0] == "files" and int(lines[1].split()[1]) < LIM.scratch_files and lines[1].split()[2] == "28"
    assert "tmpfs" in lines[2]  # ENOSPC (28) from the run's own tmpfs, not the host's disk


@needs_root
def test_only_allowed_paths_are_visible(tmp_path):
    # another checkout beside this one (outside every path masked before) with a 0777 unix socket
    other = REPO.parent / f".m1-sandbox-other-checkout-{os.getpid()}"
    other.mkdir(mode=0o755)
    (other / "secret.py").write_text("KEY = 1\n")
    os.chmod(other / "secret.py", 0o644)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(other / "sock"))
    os.chmod(other / "sock", 0o777)
    server.listen(1)
    server.setblocking(False)
    code = ("import os, socket, sys\nfor p in sys.argv[1:]:\n    print(p, os.path.exists(p))\n"
            f"s = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({str(other / 'sock')!r})\n    print('connected')\n"
            "except OSError as e:\n    print('refused', e.errno)\nprint(sorted(os.listdir('/')))")
    probes = [str(other / "secret.py"), "/etc/shadow", "/etc/passwd", "/run", "/var/lib", "/var/run", "/srv", "/opt", "/home",
              "/root/.bashrc", str(REPO / "params.yaml"), sys.prefix]
    try:
        r = run_command([PYTHON, "-S", "-c", code, *probes], limits=LIM)
        assert r.status == "ok", r.stderr
        *seen, refused, root = r.stdout.splitlines()
        assert seen == [f"{p} False" for p in probes]
        assert refused == "refused 2"  # ENOENT: the socket's path does not exist inside
        with pytest.raises(BlockingIOError):
            server.accept()
        assert set(eval(root)) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "sbin",
                                   "scratch", "tmp", "usr", "var"}
    finally:
        server.close()
        for p in other.iterdir():
            p.unlink()
        other.rmdir()


def test_tools_the_tasks_need_still_work():
    r = run_command(["sh", "-c", "git --version >/dev/null && patch --version >/dev/null && echo fine; ls /dev"],
                    limits=LIM)
    assert r.status == "ok" and r.stdout.startswith("fine\n"), r.stderr
    assert {"null", "zero", "urandom"} <= set(r.stdout.split())


@needs_cgroup
def test_memory_limit_covers_the_whole_run():
    # six processes of 156 MiB each under memory_mb=256: one fits, not six
    code = ("import os, time\nr, w = os.pipe()\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n"
            "    if pid == 0:\n        b = bytearray(156 << 20)\n        b[::4096] = b'\\x01' * len(b[::4096])\n"
            "        os.write(w, b'1')\n        time.sleep(2)\n        os._exit(0)\n    kids.append(pid)\n"
            "os.close(w)\nfor k in kids:\n    os.waitpid(k, 0)\nprint(len(os.read(r, 100)))")
    r = run(code, limits=LIM)
    assert r.status == "memory"
    assert int(r.stdout) <= 1


@needs_cgroup
def test_scratch_files_count_against_the_run_memory():
    # a scratch larger than the memory: tmpfs pages are the run's memory (no swap), so the OOM killer
    # ends the program; the launcher passes its SIGKILL on without a traceback of its own
    code = "for n in range(150):\n    open(f'b{n}', 'wb').write(b'x' * (1 << 20))\nprint('wrote 150 MB')"
    r = run(code, limits=Limits(**{**LIM.__dict__, "memory_mb": 96, "scratch_mb": 160, "scratch_files": 512}))
    assert (r.status, r.returncode, r.stdout, r.stderr) == ("memory", -9, "", "")


@needs_cgroup
def test_process_limit_covers_the_whole_run():
    code = ("import os, time\nn = 0\nfor _ in range(40):\n    try:\n        if os.fork() == 0:\n"
            "            time.sleep(3)\n            os._exit(0)\n        n += 1\n    except OSError:\n        break\nprint(n)")
    r = run(code, limits=LIM)
    assert r.status == "ok" and 0 < int(r.stdout) < LIM.max_processes


def test_without_cgroups_a_run_still_works_under_the_fallback():
    r = run("print(sum(range(10)))", limits=Limits(**{**LIM.__dict__, "cgroups": False}))
    assert (r.status, r.stdout) == ("ok", "45\n")


def test_cgroup_support_says_what_it_found():
    assert CGROUP.kind in (None, "v1", "v2")
    assert CGROUP.why  # a reason either way, written into docs/TASKS.md's table
