"""Resume you can trust (issue 17): each case kills or corrupts for real and checks what a rerun does.

- a killed ``--force`` run of clean leaves the previous output whole and no stamp, so the rerun runs;
- a killed ``--force`` SFT keeps no stamp, and its rerun continues the killed attempt to the result
  of an uninterrupted run;
- a CSV with a bad line mid-stream leaves the previous output and report, not a 1000-row mix;
- a deleted or truncated output file makes the stage stale.

The RL case (a param change after a finished RL run) is in ``test_resume_rl.py``.

The stages run in a copy of the project's code (``project``) so that their stamps, partial folders
and outputs stay in a temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import psutil
import pytest
import torch
import yaml

from flows.dag import Stage
from flows.runner import execute_stage, partial_path, read_stamp, stage_is_current
from tasks.train.checkpoint import latest_checkpoint, load_state
from tasks.train.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[1]
LLAMA = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128}
SFT = {"model": LLAMA, "data": "pairs.jsonl", "steps": 10, "batch_size": 16, "lr": 3e-3, "warmup_steps": 2,
       "log_every": 3, "checkpoint_every": 2, "keep_checkpoints": 2, "vocab_size": 300, "device": "cpu"}
CLEAN = Stage("clean", "tasks.curate.clean", {"input": "raw/corpus.csv"}, "data/clean")
SFT_STAGE = Stage("sft", "tasks.train.sft", output="runs/sft")
quiet = lambda _: None  # noqa: E731


def copy_project(dest: Path, params: dict) -> Path:
    """The project's code (tasks, model, kernels) and ``params`` as params.yaml, in ``dest``."""
    for layer in ("tasks", "model", "kernels"):
        shutil.copytree(ROOT / layer, dest / layer, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    return dest


def write_pairs(path: Path, n: int = 64) -> None:
    """Worked 1-digit additions in the reply format, as SFT data."""
    with open(path, "w") as f:
        for i in range(n):
            a, b = i % 10, (i * 7) % 10
            f.write(json.dumps({"question": f"{a}+{b}=", "response": f"<think>{a}+{b}</think><answer>{a + b}</answer>"}) + "\n")


def write_csv(path: Path, rows: int, bad_line: int | None = None) -> None:
    """A question/answer CSV; ``bad_line`` (1-based, the header is line 1) gets too many fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("id,question,answer\n")
        for i in range(rows):
            line = f"r{i},What is {i} plus {i + 1} when both are added?,{2 * i + 1}\n"
            f.write("r,too,many,fields,here\n" if bad_line == i + 2 else line)


def run_driver(root: Path, stage: Stage, force: bool) -> subprocess.Popen:
    """A process running ``execute_stage`` (what the flow's task does), in its own session."""
    driver = root / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from flows.dag import Stage
        from flows.runner import execute_stage
        stage = Stage({stage.name!r}, {stage.module!r}, {stage.inputs!r}, {stage.output!r})
        print(execute_stage(stage, root=Path({str(root)!r}), force={force}, echo=lambda _: None), flush=True)
    """))
    return subprocess.Popen([sys.executable, str(driver)], cwd=root, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> list[str]:
    """SIGKILL ``proc`` (the flow, not its children) once ``ready()``; every child must die with it
    (``flows.guard``). Returns the children's command lines."""
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the moment to kill it"
        assert time.time() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    commands = []
    for c in children:
        try:
            commands.append(" ".join(c.cmdline()))
        except psutil.NoSuchProcess:
            pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"children outlived the killed flow: {[p.pid for p in alive]}"
    return commands


def test_killed_force_run_of_clean_leaves_the_previous_output_and_reruns(tmp_path):
    root = copy_project(tmp_path, {"curate": {"clean": {"chunk_size": 5000}}})
    write_csv(root / "raw/corpus.csv", 300_000)  # big enough that the forced run can be killed mid-write
    execute_stage(CLEAN, root=root, echo=quiet)
    report = (root / "data/clean/report.json").read_text()
    kept = root / "data/clean/kept.parquet"
    kept_bytes = kept.read_bytes()

    proc = run_driver(root, CLEAN, force=True)
    partial = partial_path(CLEAN, root) / "kept.parquet"
    kill_when(proc, lambda: partial.exists() and partial.stat().st_size > 0)
    # the previous output is whole and still the one in place; the stage is not current any more
    assert kept.read_bytes() == kept_bytes and (root / "data/clean/report.json").read_text() == report
    assert pl.read_parquet(kept).height == json.loads(report)["kept"] == 300_000
    assert read_stamp(CLEAN, root) is None and not stage_is_current(CLEAN, root)

    assert not execute_stage(CLEAN, root=root, echo=quiet)["skipped"]
    assert stage_is_current(CLEAN, root) and pl.read_parquet(kept).height == 300_000
    assert not partial_path(CLEAN, root).exists()


def test_csv_with_a_bad_line_mid_stream_leaves_the_previous_output(tmp_path):
    root = copy_project(tmp_path, {"curate": {"clean": {"chunk_size": 1000}}})
    write_csv(root / "raw/corpus.csv", 6000)
    execute_stage(CLEAN, root=root, echo=quiet)
    report = json.loads((root / "data/clean/report.json").read_text())
    assert report["kept"] == 6000

    write_csv(root / "raw/corpus.csv", 6000, bad_line=4501)
    with pytest.raises(RuntimeError, match=r"(?s)exit code 2.*cannot read past row 1000"):
        execute_stage(CLEAN, root=root, echo=quiet)
    # in place: the previous run's 6000 rows beside its own report, not the failed run's first chunk
    assert json.loads((root / "data/clean/report.json").read_text()) == report
    assert pl.read_parquet(root / "data/clean/kept.parquet").height == 6000
    assert read_stamp(CLEAN, root) is None and not stage_is_current(CLEAN, root)


def test_deleted_or_truncated_output_file_makes_the_stage_rerun(tmp_path):
    root = copy_project(tmp_path, {})
    write_csv(root / "raw/corpus.csv", 50)
    execute_stage(CLEAN, root=root, echo=quiet)
    assert stage_is_current(CLEAN, root)
    kept = root / "data/clean/kept.parquet"
    good = kept.read_bytes()
    kept.write_bytes(good[: len(good) // 2])
    assert not stage_is_current(CLEAN, root)
    assert not execute_stage(CLEAN, root=root, echo=quiet)["skipped"]
    assert kept.read_bytes() == good
    (root / "data/clean/rejected.parquet").unlink()
    assert not stage_is_current(CLEAN, root)
    execute_stage(CLEAN, root=root, echo=quiet)
    # same size, same mtime, other bytes: caught by the hash once the mtime differs
    kept.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    assert not stage_is_current(CLEAN, root)
    (root / "data/clean/extra.txt").write_text("not written by the stage\n")
    assert not stage_is_current(CLEAN, root)


def test_killed_force_sft_keeps_no_stamp_and_its_rerun_continues_the_attempt(tmp_path):
    whole = copy_project(tmp_path / "whole", {"sft": SFT})
    write_pairs(whole / "pairs.jsonl")
    execute_stage(SFT_STAGE, root=whole, echo=quiet)
    reference = read_metrics(whole / "runs/sft")
    assert [r["step"] for r in reference] == [3, 6, 9, 10]

    root = copy_project(tmp_path / "killed", {"sft": SFT})
    write_pairs(root / "pairs.jsonl")
    execute_stage(SFT_STAGE, root=root, echo=quiet)
    policy = (root / "runs/sft/policy/model.safetensors").read_bytes()
    proc = run_driver(root, SFT_STAGE, force=True)
    ckpt = partial_path(SFT_STAGE, root) / "checkpoints" / "step_000004" / "state.pt"
    kill_when(proc, ckpt.exists)
    assert read_stamp(SFT_STAGE, root) is None and not stage_is_current(SFT_STAGE, root)
    assert (root / "runs/sft/policy/model.safetensors").read_bytes() == policy  # the previous output, whole
    reached = load_state(latest_checkpoint(partial_path(SFT_STAGE, root) / "checkpoints"))["step"]
    assert 4 <= reached < 10

    lines: list[str] = []
    execute_stage(SFT_STAGE, root=root, echo=lines.append)
    assert any("continuing the interrupted attempt" in line for line in lines)
    assert read_metrics(root / "runs/sft") == reference
    a = torch.load(latest_checkpoint(whole / "runs/sft/checkpoints") / "model.pt")
    b = torch.load(latest_checkpoint(root / "runs/sft/checkpoints") / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert stage_is_current(SFT_STAGE, root)
