"""The DAG machinery: ordering, dvc.yaml generation, fingerprints and stage-level resume."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from flows.dag import ROOT, Stage, fingerprint, to_dvc, topological, upstream
from flows.full_pipeline import execute_stage, stage_is_current
from flows.stages import STAGES


def test_dvc_yaml_matches_stages():
    text = (ROOT / "dvc.yaml").read_text()
    assert yaml.safe_load(text) == to_dvc(topological(STAGES)), "run `python -m flows.dag --write`"


def test_every_stage_reads_only_existing_param_keys():
    from flows.dag import params_values

    for s in STAGES:
        params_values(s.params, ROOT / "params.yaml")


def _stages():
    a = Stage("a", "mod_a", ("--out", "out/a.txt"), deps=("in.txt",), outs=("out/a.txt",), params=("a.n",))
    b = Stage("b", "mod_b", (), deps=("out/a.txt",), outs=("out/b.txt",))
    c = Stage("c", "mod_c", (), deps=("out/b.txt", "out/a.txt"), outs=("out/c.txt",))
    return [c, b, a]


def test_topological_order_and_upstream():
    stages = _stages()
    assert [s.name for s in topological(stages)] == ["a", "b", "c"]
    assert upstream(stages[0], stages) == ["b", "a"]


def test_cycle_is_an_error():
    x = Stage("x", "m", (), deps=("y.txt",), outs=("x.txt",))
    y = Stage("y", "m", (), deps=("x.txt",), outs=("y.txt",))
    with pytest.raises(ValueError, match="cycle"):
        topological([x, y])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "params.yaml").write_text("a:\n  n: 3\n")
    (tmp_path / "mod_a.py").write_text(textwrap.dedent("""
        import pathlib, sys, yaml
        n = yaml.safe_load(open("params.yaml"))["a"]["n"]
        pathlib.Path("out").mkdir(exist_ok=True)
        text = open("in.txt").read() * n
        pathlib.Path("out/a.txt").write_text(text)
        with open("runs.log", "a") as f:
            f.write("a\\n")
        if "FAIL" in text:
            sys.exit(3)
    """))
    return tmp_path


def test_stage_runs_then_skips_then_reruns_on_change(project: Path):
    stage = _stages()[2]
    first = execute_stage(stage, root=project, echo=lambda _: None)
    assert not first["skipped"]
    assert (project / "out/a.txt").read_text() == "hello\n" * 3
    assert stage_is_current(stage, project)
    assert execute_stage(stage, root=project, echo=lambda _: None)["skipped"]
    (project / "params.yaml").write_text("a:\n  n: 2\n")
    assert not stage_is_current(stage, project)
    execute_stage(stage, root=project, echo=lambda _: None)
    assert (project / "out/a.txt").read_text() == "hello\n" * 2
    assert (project / "runs.log").read_text() == "a\na\n"


def test_failed_stage_leaves_no_stamp_and_names_its_log(project: Path):
    stage = _stages()[2]
    (project / "in.txt").write_text("FAIL\n")
    with pytest.raises(RuntimeError, match=r"stage 'a' failed with exit code 3.*runs/logs/a.log"):
        execute_stage(stage, root=project, echo=lambda _: None)
    assert not (project / "runs/stamps/a.json").exists()
    (project / "in.txt").write_text("ok\n")
    assert not execute_stage(stage, root=project, echo=lambda _: None)["skipped"]
    stamp = json.loads((project / "runs/stamps/a.json").read_text())
    assert stamp["fingerprint"] == fingerprint(stage, project)


def _two_stage_project(tmp_path: Path) -> list[Stage]:
    (tmp_path / "seed.txt").write_text("1\n")
    (tmp_path / "first.py").write_text(textwrap.dedent("""
        import pathlib
        with open("calls.log", "a") as f:
            f.write("first\\n")
        pathlib.Path("a.txt").write_text(open("seed.txt").read() + "first\\n")
    """))
    (tmp_path / "second.py").write_text(textwrap.dedent("""
        import os, pathlib, time
        with open("calls.log", "a") as f:
            f.write("second\\n")
        if os.path.exists("hang"):
            time.sleep(600)
        pathlib.Path("b.txt").write_text(open("a.txt").read() + "second\\n")
    """))
    return [
        Stage("first", "first", (), deps=("seed.txt",), outs=("a.txt",)),
        Stage("second", "second", (), deps=("a.txt",), outs=("b.txt",)),
    ]


def test_killed_pipeline_resumes_at_the_interrupted_stage(tmp_path: Path):
    """Kill a real pipeline process inside its second stage; the rerun skips the first."""
    import os
    import signal
    import subprocess
    import sys
    import time

    _two_stage_project(tmp_path)
    (tmp_path / "hang").write_text("")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from flows.dag import Stage
        from flows.full_pipeline import execute_stage
        root = Path({str(tmp_path)!r})
        stages = [
            Stage("first", "first", (), deps=("seed.txt",), outs=("a.txt",)),
            Stage("second", "second", (), deps=("a.txt",), outs=("b.txt",)),
        ]
        for s in stages:
            print(execute_stage(s, root=root, echo=lambda _: None), flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if "second" in (tmp_path / "calls.log").read_text() if (tmp_path / "calls.log").exists() else False:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "runs/stamps/first.json").exists()
    assert not (tmp_path / "runs/stamps/second.json").exists()

    (tmp_path / "hang").unlink()
    out = subprocess.run([sys.executable, str(driver)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "'skipped': True" in out.stdout.splitlines()[0]
    assert (tmp_path / "b.txt").read_text() == "1\nfirst\nsecond\n"
    assert (tmp_path / "calls.log").read_text() == "first\nsecond\nsecond\n"


def test_prefect_flow_runs_the_dag_and_skips_current_stages(tmp_path: Path, monkeypatch):
    import flows.full_pipeline as fp

    monkeypatch.setattr(fp, "STAGES", _two_stage_project(tmp_path))
    first = fp.full_pipeline(root=str(tmp_path))
    assert [r["skipped"] for r in first] == [False, False]
    assert (tmp_path / "b.txt").read_text() == "1\nfirst\nsecond\n"
    (tmp_path / "seed.txt").write_text("2\n")
    again = fp.full_pipeline(root=str(tmp_path))
    assert [r["stage"] for r in again] == ["first", "second"]
    assert [r["skipped"] for r in again] == [False, False]
    assert fp.full_pipeline(root=str(tmp_path), only=["second"])[0]["skipped"]


def test_stage_run_by_the_flow_is_recorded_by_dvc(tmp_path: Path):
    """After the flow's runner, `dvc status` is clean: DVC versions the data whichever runner made it."""
    import subprocess
    import sys

    stages = _two_stage_project(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(to_dvc(stages), sort_keys=False))
    for s in stages:
        execute_stage(s, root=tmp_path, echo=lambda _: None)
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"first", "second"}
    status = subprocess.run([*dvc, "status", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(status.stdout) == {}
    (tmp_path / "seed.txt").write_text("2\n")
    status = subprocess.run([*dvc, "status", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "first" in json.loads(status.stdout)
