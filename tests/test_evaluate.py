"""The eval stage: intervals and paired differences on hand-computed pass counts, the table, and real
runs on tiny Llama policies: a rerun reuses every finished part, and a process killed mid-evaluation
resumes to the uninterrupted report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tasks.train.evaluate as ev
from tasks.envs.heldout import is_held_out
from tasks.envs.params import EnvParams
from tasks.envs.registry import get_task

ROOT = Path(__file__).resolve().parents[1]
LLAMA = {"arch": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 512}
FAMILIES = {"arithmetic": 1, "dyck_languages": 1, "boolean_expressions": 1}


def test_intervals_and_paired_differences_by_hand():
    passes = {"sft": {"a": [2, 1, 0]}, "rl": {"a": [2, 2, 1]}}
    report = ev.summarize(passes, ["a"], ["sft", "rl"], k=2)
    row = report["rows"]["a"]
    # rates (1, .5, 0) and (1, 1, .5); per-item differences (0, .5, .5): mean 1/3, sd sqrt(1/12)
    half = ev.Z95 * (1 / 12) ** 0.5 / 3 ** 0.5
    assert row["rl-sft"]["difference"] == pytest.approx(1 / 3)
    assert (row["rl-sft"]["low"], row["rl-sft"]["high"]) == pytest.approx((1 / 3 - half, 1 / 3 + half))
    assert row["rl-sft"]["beyond_interval"] is True
    assert row["sft"]["accuracy"] == pytest.approx(0.5) and row["sft"]["samples"] == 6
    # the accuracy's own interval, 0.5 -+ 1.96 * 0.5 / sqrt(3) = (-0.066, 1.066), is cut to [0, 1]
    assert (row["sft"]["low"], row["sft"]["high"]) == (0.0, 1.0)
    assert ev.interval([1.0, 0.5, 0.5, 1.0])[1:] == pytest.approx((0.75 - ev.Z95 * (1 / 12) ** 0.5 / 2, 0.75 + ev.Z95 * (1 / 12) ** 0.5 / 2))
    assert report["rows"]["mix"]["rl"]["accuracy"] == pytest.approx(2.5 / 3)
    report["policies"], report["settings"] = {"sft": "a", "rl": "b"}, {"k": 2, "temperature": 1.0, "top_p": 0.95}
    text = ev.table(report)
    assert "| a | 3 | 50.0 [" in text and "+33.3 [" in text and "] *" in text
    assert ev.policy_name("runs/rl/policy") == "rl" and ev.policy_name("/x/ckpt7") == "ckpt7"


def _policy(path: Path, seed: int) -> Path:
    import torch

    from model.tokenizer import train_tokenizer
    from tasks.train.policy import build_policy, save_policy

    torch.manual_seed(seed)
    texts = [it["question"] for name, lv in FAMILIES.items() for it in get_task(name).generate(10, 0, lv)]
    tok = train_tokenizer(texts + ["<think>1+2+0=3</think><answer>3</answer>"], 300, path / "tok")
    save_policy(build_policy(LLAMA, tok), tok, path / "policy")
    return path / "policy"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    items = []
    for name, lv in FAMILIES.items():
        held = [it for it in get_task(name).generate(80, 1_000_000, lv) if is_held_out(it["question"])][:3]
        items += [{"family": name, "task": name, **it} for it in held]
    (tmp / "heldout.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    params = tmp / "params.yaml"
    params.write_text("eval:\n  k: 2\n  max_new_tokens: 24\n  batch_size: 4\n  device: cpu\n")
    return tmp, [_policy(tmp / "sft", 0), _policy(tmp / "rl", 1)], params


def _cli(tmp: Path, policies: list[Path], params: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "tasks.train.evaluate", "--heldout", str(tmp / "heldout.jsonl"),
            *[x for p in policies for x in ("--policy", str(p))], "--params", str(params), "--output", str(out)]


def test_report_table_plot_and_a_rerun_that_reuses_every_part(setup, tmp_path, monkeypatch):
    tmp, policies, params = setup
    report = ev.main(_cli(tmp, policies, params, tmp_path)[3:])
    assert list(report["policies"]) == ["sft", "rl"] and report["families"] == sorted(FAMILIES)
    assert set(report["rows"]) == {*FAMILIES, "mix"}
    assert report["rows"]["mix"]["sft"]["items"] == 9 and report["rows"]["mix"]["rl"]["samples"] == 18
    for name in ("report.json", "table.md", "accuracy.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(list((tmp_path / "scores").rglob("*.json"))) == 6

    def no_model(*a, **k):
        raise AssertionError("a finished part was sampled again")

    monkeypatch.setattr("tasks.train.policy.SamplingPolicy.load", no_model)
    again = ev.evaluate_policies(ev.read_heldout(tmp / "heldout.jsonl"), policies, tmp_path,
                                 ev.EvalParams(k=2, max_new_tokens=24, batch_size=4, device="cpu"), EnvParams())
    assert again["rows"] == report["rows"] and again["reused_parts"] == 6


def test_killed_evaluation_resumes_to_the_uninterrupted_report(setup, tmp_path):
    tmp, policies, params = setup
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_cli(tmp, policies, params, whole), cwd=ROOT, check=True, capture_output=True)
    proc = subprocess.Popen(_cli(tmp, policies, params, killed), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((killed / "scores").rglob("*.json")):
        assert proc.poll() is None and time.time() < deadline, "evaluation ended before its first part"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = len(list((killed / "scores").rglob("*.json")))
    assert 1 <= done < 6 and not (killed / "report.json").exists()
    subprocess.run(_cli(tmp, policies, params, killed), cwd=ROOT, check=True, capture_output=True)
    a, b = (json.loads((d / "report.json").read_text()) for d in (whole, killed))
    assert a["rows"] == b["rows"]


def test_bad_inputs_exit_with_one_line(setup, tmp_path, capsys):
    tmp, policies, params = setup
    with pytest.raises(SystemExit) as e:
        ev.main(["--heldout", str(tmp / "nope.jsonl"), "--policy", str(policies[0]), "--params", str(params),
                 "--output", str(tmp_path)])
    assert e.value.code == 2 and "nope.jsonl: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        ev.main(["--heldout", str(tmp / "heldout.jsonl"), "--policy", str(tmp), "--params", str(params),
                 "--output", str(tmp_path)])
    assert e.value.code == 2 and "not a policy directory" in capsys.readouterr().err
