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
