"""The DAG machinery: ordering, dvc.yaml generation, fingerprints and stage-level resume."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from flows.dag import ROOT, Stage, beside, fingerprint, to_dvc, topological, upstream, waits
from flows.runner import ProgressThrottle, execute_stage, stage_is_current
from flows.stages import STAGES


def test_dvc_yaml_matches_stages():
    text = (ROOT / "dvc.yaml").read_text()
    assert yaml.safe_load(text) == to_dvc(topological(STAGES)), "run `python -m flows.dag --write`"


def test_every_stage_reads_registered_sections():
    from tasks.config import SECTIONS

    for s in STAGES:
        assert s.params(), f"{s.name}: its module declares no PARAMS"
        assert set(s.params()) <= set(SECTIONS), s.name


def _stages():
    a = Stage("a", "mod_a", {"input": "in.txt"}, "out/a.txt")
    b = Stage("b", "mod_b", {"input": "out/a.txt"}, "out/b.txt")
    c = Stage("c", "mod_c", {"input": "out/b.txt", "other": "out/a.txt"}, "out/c.txt")
    return [c, b, a]


def test_topological_order_and_upstream():
    stages = _stages()
    assert [s.name for s in topological(stages)] == ["a", "b", "c"]
    assert upstream(stages[0], stages) == ["b", "a"]


def test_stages_beside_a_stage_and_who_waits_passively():
    from flows.full_pipeline import SHARED_CORES_ENV, stage_env

    a, b, c = _stages()[::-1]
    d = Stage("d", "mod_d", {"input": "out/a.txt"}, "out/d.txt")  # after a, beside b and c
    assert [beside(s, [a, b, c]) for s in (a, b, c)] == [[], [], []]
    assert [[x.name for x in beside(s, [a, b, c, d])] for s in (a, b, c, d)] == [[], ["d"], ["d"], ["b", "c"]]
    names = lambda stage: {s.name for s in beside(stage, STAGES)}  # noqa: E731
    by_name = {s.name: s for s in STAGES}
    assert names(by_name["sft"]) == names(by_name["genrm"]) == set()  # they run alone
    passive = {s.name for s in STAGES if stage_env(s) == SHARED_CORES_ENV}
    # no torch stage runs beside another: sft and genrm run alone, the rest read each other's outputs
    assert passive == set()


def test_a_stage_alone_starts_after_all_before_it_and_all_after_it_wait():
    a = Stage("a", "m", output="a.txt")
    b = Stage("b", "m", {"input": "a.txt"}, "b.txt")
    lone = Stage("lone", "m", output="lone.txt", alone=True)  # reads nothing
    c = Stage("c", "m", output="c.txt")  # reads nothing
    d = Stage("d", "m", {"input": "lone.txt"}, "d.txt")
    stages = [a, b, lone, c, d]
    assert [waits(s, stages) for s in stages] == [[], ["a"], ["a", "b"], ["lone"], ["lone"]]
    assert [[x.name for x in beside(s, stages)] for s in stages] == [[], [], [], ["d"], ["c"]]
    sft = next(s for s in STAGES if s.name == "sft")
    assert set(waits(sft, STAGES)) == {"raw_math", "clean", "dedup", "decontaminate", "questions", "synlogic"}


def test_cycle_is_an_error():
    x = Stage("x", "m", {"input": "y.txt"}, "x.txt")
    y = Stage("y", "m", {"input": "x.txt"}, "y.txt")
    with pytest.raises(ValueError, match="cycle"):
        topological([x, y])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "params.yaml").write_text("raw_math:\n  n_base: 3\n")
    (tmp_path / "mod_a.py").write_text(textwrap.dedent("""
        import pathlib, sys, yaml
        PARAMS = {"raw_math": None}
        n = yaml.safe_load(open("params.yaml"))["raw_math"]["n_base"]
        out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        text = open("in.txt").read() * n
        out.write_text(text)
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
    (project / "params.yaml").write_text("raw_math:\n  n_base: 2\n")
    assert not stage_is_current(stage, project)
    execute_stage(stage, root=project, echo=lambda _: None)
    assert (project / "out/a.txt").read_text() == "hello\n" * 2
    assert (project / "runs.log").read_text() == "a\na\n"


def test_progress_lines_are_echoed_at_most_once_per_interval_and_all_logged_and_env_reaches_the_stage(project: Path):
    lines = ["sft:  20%|██        | 60/300 [03:25<05:32,  1.38s/it]", "decontaminate: 1batch [00:04,  4.77s/batch]",
             "difficulty: 100%|██████████| 438/438 [1:02:03<00:00, 12.1it/s]"]
    plain = ["{'loss': 0.5}", "wrote 3 rows [a, b]", "step 3 [ok]"]
    t = [0.0]
    shown = ProgressThrottle(every=15, clock=lambda: t[0])
    assert all(shown(line) for line in plain)
    assert [shown(line) for line in lines] == [True, False, False]
    t[0] = 14.9
    assert not shown(lines[0]) and all(shown(line) for line in plain)
    t[0] = 15.0
    assert shown(lines[1]) and not shown(lines[2])
    # through a stage: the log file keeps every line, the echo the plain ones and the first progress line
    (project / "mod_a.py").write_text(textwrap.dedent("""
        import os, pathlib, sys
        PARAMS = {"raw_math": None}
        for i in range(50):
            print(f"work: {2 * i}%|#    | {i}/50 [00:0{i % 10}<00:05,  9.99it/s]")
        print("done")
        out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(os.environ["M1_STAGE_ENV"])
    """))
    echoed = []
    execute_stage(_stages()[2], root=project, echo=echoed.append, env={"M1_STAGE_ENV": "given"})
    assert (project / "out/a.txt").read_text() == "given"
    assert len((project / "runs/logs/a.log").read_text().splitlines()) == 51
    progress = [e for e in echoed if "it/s]" in e]
    assert progress == ["[a] work: 0%|#    | 0/50 [00:00<00:05,  9.99it/s]"] and "[a] done" in echoed


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
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "seed.txt").write_text("1\n")
    (tmp_path / "first.py").write_text(textwrap.dedent("""
        import pathlib, sys
        with open("calls.log", "a") as f:
            f.write("first\\n")
        out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1])
        out.write_text(open("seed.txt").read() + "first\\n")
    """))
    (tmp_path / "second.py").write_text(textwrap.dedent("""
        import os, pathlib, sys, time
        with open("calls.log", "a") as f:
            f.write("second\\n")
        if os.path.exists("hang"):
            time.sleep(600)
        out = pathlib.Path(sys.argv[sys.argv.index("--output") + 1])
        out.write_text(open("a.txt").read() + "second\\n")
    """))
    return [
        Stage("first", "first", {"seed": "seed.txt"}, "a.txt"),
        Stage("second", "second", {"input": "a.txt"}, "b.txt"),
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
        from flows.runner import execute_stage
        root = Path({str(tmp_path)!r})
        stages = [
            Stage("first", "first", {{"seed": "seed.txt"}}, "a.txt"),
            Stage("second", "second", {{"input": "a.txt"}}, "b.txt"),
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
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(to_dvc(stages, tmp_path), sort_keys=False))
    for s in stages:
        execute_stage(s, root=tmp_path, echo=lambda _: None)
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"first", "second"}
    status = subprocess.run([*dvc, "status", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(status.stdout) == {}
    (tmp_path / "seed.txt").write_text("2\n")
    status = subprocess.run([*dvc, "status", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "first" in json.loads(status.stdout)


def test_stage_code_is_the_import_closure(tmp_path: Path):
    from flows.dag import declared_params, import_closure

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from . import b\nimport json\n\ndef f():\n    from pkg.c import g\n")
    (tmp_path / "pkg" / "b.py").write_text("PARAMS = {'rl': object, 'envs': object}\n")
    (tmp_path / "pkg" / "c.py").write_text("from pkg import b\n")
    (tmp_path / "pkg" / "unused.py").write_text("")
    assert import_closure("pkg.a", tmp_path) == ("pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py")
    assert declared_params("pkg.b", tmp_path) == ("rl", "envs")
    assert declared_params("pkg.a", tmp_path) == ()


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_code_lists_every_project_file_its_module_imports(stage: Stage):
    """Import the stage's module in a fresh interpreter: every project file it loads is a listed dep."""
    import subprocess
    import sys

    probe = (
        "import importlib, json, sys, pathlib\n"
        f"importlib.import_module({stage.module!r})\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "files = sorted({str(pathlib.Path(m.__file__).resolve().relative_to(root)) for m in list(sys.modules.values())\n"
        "                if getattr(m, '__file__', None) and pathlib.Path(m.__file__).is_absolute()\n"
        "                and pathlib.Path(m.__file__).resolve().is_relative_to(root)\n"
        "                and '.venv' not in pathlib.Path(m.__file__).parts})\n"
        "print(json.dumps(files))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(ROOT)], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    missing = loaded - set(stage.code())
    assert not missing, f"{stage.name} imports files its dependencies do not list: {sorted(missing)}"


PROJECT = ("kernels", "model", "tasks", "flows")


def _project_sources():
    for layer in PROJECT:
        yield from sorted((ROOT / layer).rglob("*.py"))


def test_no_dynamic_imports_in_project_code():
    """The DAG follows static imports only, so project code may not import by name at run time."""
    import ast

    bad = []
    for path in _project_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if name not in ("import_module", "__import__") or path.relative_to(ROOT).as_posix() == "tasks/config.py":
                    continue
                arg = node.args[0] if node.args else None
                third_party = isinstance(arg, ast.Constant) and str(arg.value).split(".")[0] not in PROJECT
                if not third_party:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, f"dynamic imports hide code dependencies from the DAG: {bad}"


def test_only_the_loader_reads_params_yaml():
    """params.yaml is read in one place, tasks/config.py: no other module parses YAML or names the file to open it."""
    import ast

    bad = []
    for path in _project_sources():
        rel = path.relative_to(ROOT).as_posix()
        if rel == "tasks/config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("safe_load", "load", "full_load", "unsafe_load", "load_all", "safe_load_all") and \
                    isinstance(node.func.value, ast.Name) and node.func.value.id == "yaml":
                bad.append(f"{rel}:{node.lineno} yaml.{node.func.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open" and \
                    any(isinstance(a, ast.Constant) and "params" in str(a.value) for a in node.args):
                bad.append(f"{rel}:{node.lineno} open(params)")
    assert not bad, f"params.yaml must be read through tasks.config.load: {bad}"


def test_the_recipe_runs_in_the_reports_order():
    """raw -> clean -> dedup -> decontaminate -> questions; synlogic -> sft -> calibrate -> difficulty
    -> rl_data -> rl -> eval, each stage reading the files of the one before."""
    by = {s.name: s for s in STAGES}
    up = {name: set(upstream(s, STAGES)) for name, s in by.items()}
    chain = ["raw_math", "clean", "dedup", "decontaminate", "questions", "difficulty", "rl_data", "rl", "eval"]
    for a, b in zip(chain, chain[1:]):
        assert a in up[b], f"{b} does not read {a}'s output"
    assert up["calibrate"] == {"sft"} and {"calibrate", "synlogic", "sft", "questions"} <= up["difficulty"]
    # RL's prompts come from the RL data, and the general tasks' items with the judge that scores them from genrm
    assert up["rl"] == {"sft", "rl_data", "genrm"} and up["genrm"] == {"sft"}
    assert up["extend"] == {"rl", "rl_data"}  # continues RL's state on the RL data
    assert up["eval"] == {"rl_data", "sft", "rl", "extend"}
    order = [s.name for s in topological(STAGES)]
    assert order.index("calibrate") < order.index("difficulty") < order.index("rl_data") < order.index("rl") \
        < order.index("extend") < order.index("eval")


def test_a_tuple_of_paths_repeats_the_flag():
    s = Stage("eval", "m", {"heldout": "h.jsonl", "policy": ("runs/sft/policy", "runs/rl/policy")}, "runs/eval")
    assert s.argv[:8] == ["-m", "m", "--heldout", "h.jsonl", "--policy", "runs/sft/policy", "--policy", "runs/rl/policy"]
    assert s.deps == ("h.jsonl", "runs/sft/policy", "runs/rl/policy")


def test_flow_killed_mid_eval_resumes_with_the_finished_parts(tmp_path: Path):
    """The real eval stage run by the flow's runner, the flow killed after the stage's first finished
    (policy, family) part: the rerun keeps the partial output and scores only what was left."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    from model.tokenizer import train_tokenizer
    from tasks.envs.heldout import is_held_out
    from tasks.envs.registry import get_task
    from tasks.train.policy import build_policy, save_policy

    for package in ("tasks", "model", "kernels"):  # the stage's code, as the project holds it
        (tmp_path / package).symlink_to(ROOT / package)
    items = [{"family": name, "task": name, **it} for name in ("arithmetic", "dyck_languages", "boolean_expressions")
             for it in [x for x in get_task(name).generate(60, 1_000_000, 1) if is_held_out(x["question"])][:3]]
    (tmp_path / "heldout.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    tok = train_tokenizer([it["question"] for it in items], 300, tmp_path / "tok")
    for i, name in enumerate(("sft", "rl")):
        torch.manual_seed(i)
        llama = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                 "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 512}
        save_policy(build_policy(llama, tok), tok, tmp_path / name / "policy")
    (tmp_path / "params.yaml").write_text("eval:\n  k: 2\n  max_new_tokens: 24\n  batch_size: 4\n  device: cpu\n")
    stage = Stage("eval", "tasks.train.evaluate", {"heldout": "heldout.jsonl", "policy": ("sft/policy", "rl/policy")},
                  "runs/eval")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from flows.dag import Stage
        from flows.runner import execute_stage
        stage = Stage({stage.name!r}, {stage.module!r}, {stage.inputs!r}, {stage.output!r})
        print(execute_stage(stage, root=Path({str(tmp_path)!r}), echo=print), flush=True)
    """))
    parts = tmp_path / "runs" / ".partial" / "eval" / "scores"
    proc = subprocess.Popen([sys.executable, str(driver)], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not list(parts.rglob("*.json")):
        assert proc.poll() is None and time.time() < deadline, "the stage ended before its first part"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(parts.rglob("*.json")))
    assert 1 <= done < 6 and not (tmp_path / "runs" / "stamps" / "eval.json").exists()

    out = subprocess.run([sys.executable, str(driver)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert f"{done} of 6 (policy, family) parts reused" in out.stdout
    report = json.loads((tmp_path / "runs" / "eval" / "report.json").read_text())
    assert report["reused_parts"] == done and set(report["rows"]) == {"arithmetic", "dyck_languages",
                                                                      "boolean_expressions", "mix"}
    assert (tmp_path / "runs" / "stamps" / "eval.json").exists()
