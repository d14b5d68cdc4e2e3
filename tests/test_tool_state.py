"""A stage's tools (matplotlib, MLflow, DVC) keep their state out of the home directory and send no
telemetry, whoever starts the stage: the settings come from importing ``tasks``, not from a caller."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import tasks

#: the settings tests/conftest.py makes for the test process; the child starts without them
SET_BY_TESTS = ("MPLCONFIGDIR", "TRITON_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "DVC_NO_ANALYTICS",
                "DVC_SITE_CACHE_DIR", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")


def test_a_stage_process_writes_nothing_to_the_home_directory(tmp_path: Path):
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in SET_BY_TESTS}
    env["HOME"] = str(home)
    script = textwrap.dedent(f"""
        import os, subprocess, sys
        import tasks
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        plt.plot([1, 2])
        plt.savefig({str(tmp_path / 'plot.png')!r})
        import mlflow
        mlflow.set_tracking_uri({f'sqlite:///{tmp_path / "mlflow.db"}'!r})
        with mlflow.start_run():
            mlflow.log_metric("x", 1.0)
        for args in (["init", "--no-scm", "-q"], ["status"]):
            subprocess.run([sys.executable, "-m", "dvc", *args], cwd={str(project)!r}, check=True)
        from dvc.repo import Repo
        print(Repo({str(project)!r}).site_cache_dir)
        print(os.environ["MPLCONFIGDIR"])
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
    site_cache, mpl = map(Path, done.stdout.strip().splitlines()[-2:])
    assert mpl == tasks.ROOT / ".cache" / "matplotlib"
    assert site_cache.is_relative_to(tasks.ROOT / ".cache" / "dvc")  # not /var/tmp/dvc
