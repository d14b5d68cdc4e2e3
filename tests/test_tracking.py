"""MLflow and process hygiene (issue 17 part 4) and MLflow as users compare runs (issue 11), for real:

- an exception or ``sys.exit`` ends a run FAILED (an RL process SIGKILLed before its first
  checkpoint: ``test_resume_rl.py``);
- ``kill -9`` of the flow takes its Prefect API server and its running stage with it;
- two flows in one folder: the second to reach a stage stops, naming the first one's pid;
- the flow: one parent run per pipeline run with a nested run per stage (params, report counts,
  artifacts, the training stage's steps and its policy as a model), a skipped stage's run tagged
  with the run that made its outputs, and two pipeline runs whose params and counts differ.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from flows.dag import Stage
from flows.runner import StageBusy, execute_stage, read_stamp
from test_resume import SFT, kill_when, write_pairs

ROOT = Path(__file__).resolve().parents[1]


def _history_steps(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    keys = client.get_run(run_id).data.metrics
    return {k: [m.step for m in client.get_metric_history(run_id, k)] for k in keys}


@pytest.mark.parametrize("ending, status", [("raise ValueError('boom')", "FAILED"), ("sys.exit(2)", "FAILED"),
                                            ("t.close()", "FINISHED")])
def test_a_crashing_process_ends_its_run_failed(tmp_path, ending, status):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from tasks.train.tracking import RunTracker
        t = RunTracker({str(tmp_path)!r}, experiment="crash-test", run_name="crash", params={{"lr": 1}})
        t.log(1, {{"loss": 2.0}})
        print(t.run_id, flush=True)
        {ending}
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    run_id = done.stdout.split()[0]
    assert MlflowClient().get_run(run_id).info.status == status


def _toy_stages(root: Path) -> list[Stage]:
    """Three toy stages over ``--output``: ``data`` (a report and a figure), ``train`` (metrics through
    RunTracker, a copy of a real policy), ``hang`` (sleeps while the file ``hang`` exists)."""
    (root / "data_stage.py").write_text(textwrap.dedent("""
        import json, pathlib, sys, yaml
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        PARAMS = {"raw_math": None}
        n = yaml.safe_load(open("params.yaml"))["raw_math"]["n_base"]
        out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1])
        out.mkdir(parents=True, exist_ok=True)
        report = {"rows_in": n + 2, "kept": n, "rejected": 2, "by_reason": {"short": 2},
                  "passes_histogram": {"0/10": 1, "3/10": n - 1}, "removed": [{"row": 1}]}
        (out / "report.json").write_text(json.dumps(report))
        plt.bar([0, 3], [1, n - 1])
        plt.savefig(out / "histogram.png")
        (out / "kept.jsonl").write_text("{}\\n" * n)
    """))
    (root / "train_stage.py").write_text(textwrap.dedent("""
        import pathlib, shutil, sys
        from tasks.train.tracking import RunTracker
        PARAMS = {"sft": None}
        out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1])
        tracker = RunTracker(out, experiment="toy-train", run_name="toy", params={"lr": 1})
        for step in (1, 2, 3):
            tracker.log(step, {"loss": 1.0 / step, "eval/accuracy": 0.2 * step})
        shutil.copytree("base/policy", out / "policy")
        tracker.close()
    """))
    (root / "hang_stage.py").write_text(textwrap.dedent("""
        import os, pathlib, sys, time
        out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1])
        with open("calls.log", "a") as f:
            f.write("hang\\n")
        while os.path.exists("hang"):
            time.sleep(0.1)
        out.write_text("done\\n")
    """))
    return [Stage("data", "data_stage", output="out/data"), Stage("train", "train_stage", output="out/train"),
            Stage("hang", "hang_stage", output="out/hang.txt")]


def _write_params(root: Path, n: int) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump({"raw_math": {"n_base": n}, "sft": {"steps": 30}}))


def test_kill_9_of_the_flow_leaves_no_server_and_no_stage_running(tmp_path):
    _toy_stages(tmp_path)
    _write_params(tmp_path, 3)
    (tmp_path / "hang").write_text("")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import flows.full_pipeline as fp
        from flows.dag import Stage
        fp.STAGES = [Stage("hang", "hang_stage", output="out/hang.txt")]
        with fp.prefect_api():
            fp.full_pipeline(root={str(tmp_path)!r})
    """))
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    calls = tmp_path / "calls.log"
    commands = kill_when(proc, lambda: calls.exists() and "hang" in calls.read_text(), timeout=600)
    assert any("uvicorn" in c for c in commands) and any("hang_stage" in c for c in commands), commands


def test_second_flow_on_the_same_stage_stops_naming_the_first(tmp_path):
    _toy_stages(tmp_path)
    _write_params(tmp_path, 3)
    (tmp_path / "hang").write_text("")
    hang = Stage("hang", "hang_stage", output="out/hang.txt")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from flows.dag import Stage
        from flows.runner import execute_stage
        execute_stage(Stage("hang", "hang_stage", output="out/hang.txt"), root=Path({str(tmp_path)!r}), echo=print)
    """))
    first = subprocess.Popen([sys.executable, str(driver)], cwd=tmp_path, stdout=subprocess.DEVNULL)
    calls = tmp_path / "calls.log"
    deadline = time.time() + 60
    while not (calls.exists() and "hang" in calls.read_text()):
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.05)
    with pytest.raises(StageBusy, match=rf"stage 'hang' is already running \(pid {first.pid} since"):
        execute_stage(hang, root=tmp_path, echo=lambda _: None)
    (tmp_path / "hang").unlink()
    assert first.wait(timeout=60) == 0
    assert (tmp_path / "out/hang.txt").read_text() == "done\n"
    assert execute_stage(hang, root=tmp_path, echo=lambda _: None)["skipped"]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    """A tiny Llama policy, briefly SFT'd (what the toy training stage hands on)."""
    from tasks.train.sft import SFTParams, train_sft

    root = tmp_path_factory.mktemp("policy")
    write_pairs(root / "pairs.jsonl")
    train_sft(SFTParams(**{**SFT, "data": str(root / "pairs.jsonl"), "steps": 4}), root)
    return root / "policy"


def test_flow_logs_one_parent_run_with_a_nested_run_per_stage(policy, tmp_path, monkeypatch):
    import mlflow
    import pandas as pd

    import flows.full_pipeline as fp

    stages = _toy_stages(tmp_path)[:2]
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "policy").symlink_to(policy)
    _write_params(tmp_path, 3)
    monkeypatch.setattr(fp, "STAGES", stages)
    client = MlflowClient()

    fp.full_pipeline(root=str(tmp_path))
    data_run = client.get_run(read_stamp(stages[0], tmp_path)["mlflow_run_id"])
    train_run = client.get_run(read_stamp(stages[1], tmp_path)["mlflow_run_id"])
    parent_id = data_run.data.tags["mlflow.parentRunId"]
    assert train_run.data.tags["mlflow.parentRunId"] == parent_id
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name.startswith("pipeline-")
    assert parent.data.params["raw_math.n_base"] == "3" and parent.data.params["sft.steps"] == "30"
    assert parent.data.metrics["data/kept"] == 3 and parent.data.metrics["data/by_reason/short"] == 2
    assert parent.data.metrics["train/eval/accuracy"] == pytest.approx(0.6)
    # the data stage: its section, every number of its report, its figure and tables
    assert data_run.info.status == "FINISHED" and data_run.data.params["raw_math.n_base"] == "3"
    assert all(k.startswith("raw_math.") for k in data_run.data.params)
    assert data_run.data.metrics == {"rows_in": 5, "kept": 3, "rejected": 2, "by_reason/short": 2,
                                     "passes_histogram/0/10": 1, "passes_histogram/3/10": 2}
    assert sorted(a.path for a in client.list_artifacts(data_run.info.run_id)) == ["histogram.png", "report.json"]
    # the training stage: RunTracker logged its steps into the stage's run; the policy is a model
    assert _history_steps(client, train_run.info.run_id)["loss"] == [1, 2, 3]
    assert client.list_artifacts(train_run.info.run_id) == []  # not the tracker's mlflow_run.json
    assert train_run.info.status == "FINISHED"
    models = client.search_logged_models([train_run.info.experiment_id],
                                         filter_string=f"source_run_id = '{train_run.info.run_id}'")
    assert [m.name for m in models] == ["policy"]
    replies = mlflow.pyfunc.load_model(models[0].model_uri).predict(pd.DataFrame({"question": ["1+2="]}),
                                                                     params={"max_new_tokens": 8})
    assert len(replies) == 1 and isinstance(replies[0], str)

    # a second pipeline run with another value: the data stage reruns, the train stage is reused
    _write_params(tmp_path, 5)
    fp.full_pipeline(root=str(tmp_path))
    data2 = client.get_run(read_stamp(stages[0], tmp_path)["mlflow_run_id"])
    parent2 = client.get_run(data2.data.tags["mlflow.parentRunId"])
    assert parent2.info.run_id != parent_id and parent2.data.params["raw_math.n_base"] == "5"
    assert parent2.data.metrics["data/kept"] == 5 and parent2.data.metrics["train/eval/accuracy"] == pytest.approx(0.6)
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent2.info.run_id}'")
    reused = [r for r in children if r.info.run_name == "train"]
    assert len(children) == 2 and reused[0].data.tags["m1.reused_from"] == train_run.info.run_id
    assert reused[0].data.tags["m1.skipped"] == "true" and reused[0].data.metrics["eval/accuracy"] == pytest.approx(0.6)
