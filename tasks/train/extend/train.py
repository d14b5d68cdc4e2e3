"""python -m tasks.train.extend.train --rl runs/rl --data data/rl --output runs/extend [--params params.yaml] [--set KEY=VALUE]

Staged length extension (report section 5). RL continues from the ``rl`` stage's last checkpoint
(``--rl``: its weights, optimizer and warmup state, step and prompt cursor) through output windows of
the report's ratios 40:48:56:64:72:80 times ``extend.base_tokens``. Each window is a run of
``tasks.train.rl.train.train_rl`` with the window as reply budget and the mitigations that
``extend`` switches on (combined sample + token loss normalization, a lower gradient clip, a falling
eps_high, early truncation of repetitive replies), started from the previous window's last
checkpoint. It moves to the next window when the promotion rule says so
(``tasks.train.extend.schedule.promotion``: generation perplexity converged and p99 reply length near
the window); before the last window the data are refiltered with the current policy. ``extend.steps``
bounds the whole extension, which ends in whatever window it has reached. ``--data`` is the RL data
(``tasks.curate.rl_data``); the prompts are its rows of the ``extend.tasks`` plus items generated at
their levels (``tasks.train.extend.data``).

Writes into ``DIR``:

- ``policy/``: the extended policy (HF format; the ``eval`` stage scores it beside SFT and RL);
- ``metrics.jsonl``: every step of every window in order, each with its window and mitigations and
  the rule's two indicators (``extend/*``), the held-out evaluations (``eval/*``);
- ``report.json``: the windows reached (start and end step, why each ended), the refilter's counts,
  and the closing comparison; ``figure4.png``: Figure 4;
- ``long_replies.md``: held-out accuracy of the RL and the extended policy on items whose worked
  reply is longer than the first window and on the others, with the ``eval`` section's sampling;
- ``checkpoints/``: resume state: ``windows.json`` (each window begun, and how it ended),
  ``window<k>/`` (its RL run: checkpoints, metrics), ``data/`` and ``data_last/`` (after the refilter).

Killed anywhere, a rerun with the same settings and inputs resumes at the same window and step:
finished windows are skipped, the current one resumes from its own checkpoints, and a window whose
promotion was checkpointed stops there again. Other settings or inputs start afresh (and say which).
One MLflow run holds it all (the flow's stage run, or one of its own): per-step metrics from every
window, each promotion's reason as a tag ``extend.window<k>``, the figure and tables as artifacts.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from model.sharded import set_cores
from tasks.config import UsageError, exits_cleanly, load, stage_parser
from tasks.envs.params import EnvParams
from tasks.train.checkpoint import differences, digest, latest_checkpoint, load_state, made_by
from tasks.train.evaluate import EvalParams, accuracy_cell, difference_cell, interval, score_family
from tasks.train.extend.data import extension_rows, read_data, refilter, write_data
from tasks.train.extend.figure import figure4
from tasks.train.extend.params import ExtendParams
from tasks.train.extend.schedule import mitigations, promotion, window_params, windows
from tasks.train.rl.config import RLParams
from tasks.train.rl.train import train_rl
from tasks.train.tracking import ENV_RUN, RunTracker, mlflow_client, read_metrics


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _windows_log_into(run_id: str | None) -> Iterator[None]:
    """Each window's ``RunTracker`` logs into ``run_id`` (as a stage process logs into the flow's run)."""
    old = os.environ.get(ENV_RUN)
    if run_id:
        os.environ[ENV_RUN] = run_id
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_RUN, None)
        else:
            os.environ[ENV_RUN] = old


def begin(work: Path, made: dict[str, Any]) -> dict[str, Any]:
    """The resume state in ``work`` if these settings and inputs made it; otherwise ``work`` is
    cleared (saying which setting or input changed) and a fresh state returned."""
    path, record = work / "windows.json", work / "made_by.json"
    fresh = {"made_by": digest(made), "windows": []}
    if path.exists():
        state = json.loads(path.read_text())
        if state.get("made_by") == digest(made):
            return state
        old = json.loads(record.read_text()) if record.exists() else {}
        why = "; ".join(differences(old, json.loads(json.dumps(made)))) or "an older layout"
        print(f"{work}: made by other settings ({why}); starting the extension afresh")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _write_json(record, made)
    _write_json(path, fresh)
    return fresh


def promotion_rule(window_dir: Path, k: int, wins: list[int], params: ExtendParams, end: int,
                   settings: dict[str, float]) -> Callable[[int, dict[str, float]], str | None]:
    """``train_rl``'s ``stop``: adds the window's settings and the rule's indicators to each step's
    metrics; returns the promotion's reason when the rule says to move on (never in the last window
    or at the budget's last step)."""

    def stop(step: int, metrics: dict[str, float]) -> str | None:
        metrics.update(settings)
        d = promotion(read_metrics(window_dir) + [metrics], wins[k], params)
        metrics.update({"extend/ppl_change": d.ppl_change, "extend/p99_over_window": d.p99 / wins[k]})
        promote = d.promote and k + 1 < len(wins) and step < end
        metrics["extend/promoted"] = float(promote)
        return f"step {step}: {wins[k]} -> {wins[k + 1]} tokens; {d.reason}" if promote else None

    return stop


def pass_rates(policy_dir: Path, rows: list[dict], window: int, rl: RLParams, params: ExtendParams,
               envs: EnvParams) -> list[float]:
    """Each row's pass rate under the policy: ``refilter_samples`` samples at the window, RL's sampling."""
    from tasks.envs.scoring import Scorer, item_from_row
    from tasks.train.policy import SamplingPolicy

    policy = SamplingPolicy.load(policy_dir, max_new_tokens=window, temperature=rl.temperature, top_p=rl.top_p,
                                 batch_size=256, seed=rl.seed, device=rl.device)
    scorer, k, rates = Scorer(envs), params.refilter_samples, []
    chunk = max(1, 256 // k)
    for lo in tqdm(range(0, len(rows), chunk), desc="refilter: grading", unit="batch"):
        items = [item_from_row(r) for r in rows[lo : lo + chunk]]
        with torch.no_grad():
            rates += [p / k for p in score_family(policy, scorer, items, k)]
    return rates


def start_evaluation(policy_dir: Path, data_dir: Path, cfg: RLParams, envs: EnvParams, work: Path) -> dict[str, float]:
    """Held-out accuracy of the policy the extension starts from, at the first window (Figure 4's
    first point), as ``train_rl`` evaluates."""
    from tasks.envs.scoring import Scorer
    from tasks.train.policy import load_policy, resolve_device
    from tasks.train.rl.data import RLData
    from tasks.train.rl.engines import make_rollout_engine
    from tasks.train.rl.train import evaluate

    model, tok = load_policy(policy_dir)
    device = resolve_device(cfg.device)
    model.to(device).eval()
    engine = make_rollout_engine(cfg, model, tok, work / "start")
    eval_sets = {f: items[: cfg.eval_prompts] for f, items in sorted(RLData.load(data_dir).heldout.items())}
    with torch.no_grad():
        return evaluate(engine, tok, Scorer(envs), eval_sets, cfg, device)


def compare_long_replies(policies: dict[str, Path], heldout: list[dict], first_window: int, ev: EvalParams,
                         envs: EnvParams) -> dict[str, Any]:
    """Held-out accuracy of each policy (the first the baseline) per task and level, on the items
    whose worked reply is longer than ``first_window`` tokens, and on all, with the ``eval`` section's
    sampling; 95% intervals over items, paired differences against the baseline."""
    from tasks.envs.scoring import Scorer
    from tasks.train.policy import SamplingPolicy, encode_reply, load_policy

    _, tok = load_policy(next(iter(policies.values())))
    need = [len(encode_reply(tok, it["metadata"]["solution"])) if (it.get("metadata") or {}).get("solution") else None
            for it in heldout]
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(heldout):
        groups.setdefault(f"{it['task']} level {it.get('difficulty')}", []).append(i)
    groups[f"worked reply > {first_window} tokens"] = [i for i, n in enumerate(need) if n is not None and n > first_window]
    groups["all"] = list(range(len(heldout)))
    scorer, rates = Scorer(envs), {}
    for name, path in policies.items():
        policy = SamplingPolicy.load(path, max_new_tokens=ev.max_new_tokens, temperature=ev.temperature,
                                     top_p=ev.top_p, batch_size=ev.batch_size, seed=ev.seed, device=ev.device)
        passes: list[int] = []
        for lo in tqdm(range(0, len(heldout), 32), desc=f"long replies: {name}", unit="batch"):
            with torch.no_grad():
                passes += score_family(policy, scorer, heldout[lo : lo + 32], ev.k)
        rates[name] = [p / ev.k for p in passes]
    names = list(policies)
    out: dict[str, Any] = {"first_window": first_window, "k": ev.k, "max_new_tokens": ev.max_new_tokens, "groups": {}}
    for label, idx in groups.items():
        if not idx:
            continue
        lengths = [need[i] for i in idx if need[i] is not None]
        row: dict[str, Any] = {"items": len(idx), "reply_tokens": float(np.mean(lengths)) if lengths else None}
        for n in names:
            acc, lo, hi = interval([rates[n][i] for i in idx], clip=(0.0, 1.0))
            row[n] = {"accuracy": acc, "low": lo, "high": hi}
        for n in names[1:]:
            diff, lo, hi = interval([rates[n][i] - rates[names[0]][i] for i in idx])
            row[f"{n}-{names[0]}"] = {"difference": diff, "low": lo, "high": hi, "beyond_interval": bool(lo > 0 or hi < 0)}
        out["groups"][label] = row
    return out


def comparison_table(cmp: dict[str, Any], names: list[str]) -> str:
    """``compare_long_replies``' result as markdown."""
    head = ["held-out items", "n", "worked reply (tokens)"] + [f"{n} % [95%]" for n in names] + \
           [f"{n} - {names[0]} (pts) [95%]" for n in names[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, row in cmp["groups"].items():
        cells = [label, str(row["items"]), f"{row['reply_tokens']:.1f}" if row["reply_tokens"] else "-"]
        cells += [accuracy_cell(row[n]) for n in names] + [difference_cell(row[f"{n}-{names[0]}"]) for n in names[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"k = {cmp['k']} samples per item, the eval section's sampling, up to {cmp['max_new_tokens']} new "
                  f"tokens for both; worked reply = the task's reference solution, tokenized; the first window is "
                  f"{cmp['first_window']} tokens; intervals over items (normal, 95%); * = the difference's interval "
                  "excludes 0."]
    return "\n".join(lines)


def extend(rl_dir: str | Path, data_dir: str | Path, out_dir: str | Path, params: ExtendParams, rl: RLParams,
           envs: EnvParams, ev: EvalParams) -> dict[str, Any]:
    """Run (or resume) the extension from the RL run ``rl_dir`` into ``out_dir``; returns the report."""
    rl_dir, out = Path(rl_dir), Path(out_dir)
    init = latest_checkpoint(rl_dir / "checkpoints")
    if init is None or not (rl_dir / "policy" / "config.json").is_file():
        raise UsageError(f"--rl {rl_dir}: needs the RL stage's checkpoints/step_* and policy/ "
                         "(python -m tasks.train.rl.train)")
    wins = windows(params)
    if params.prompts_per_step % rl.updates_per_batch:
        raise params.fail("prompts_per_step", params.prompts_per_step,
                          f"a multiple of rl.updates_per_batch = {rl.updates_per_batch} (minibatches of whole groups)")
    if rl.rollout_engine == "vllm" and rl.vllm.max_model_len <= wins[-1]:
        raise params.fail("ratios", list(params.ratios), f"windows under rl.vllm.max_model_len = {rl.vllm.max_model_len}")
    work = out / "checkpoints"
    made = made_by({"extend": params, "rl": rl, "envs": envs}, {"rl": rl_dir, "data": data_dir})
    state = begin(work, made)
    begun: list[dict[str, Any]] = state["windows"]
    first = load_state(init)["step"]
    end = first + params.steps
    if not (work / "data" / "mix.parquet").is_file():
        write_data(work / "data", *extension_rows(data_dir, params, envs))
    rows, heldout = read_data(work / "data")

    tracker = RunTracker(work / "run", experiment=params.experiment, run_name="extend",
                         params={f"extend.{k}": v for k, v in params.to_dict().items()}, made=made,
                         resume_step=first if begun else 0)
    if not begun:
        cfg0 = window_params(rl, params, 0, wins, end=end)
        tracker.log(first, {**start_evaluation(rl_dir / "policy", work / "data", cfg0, envs, work),
                            **mitigations(cfg0, params, 0, wins[0])})
    refiltered: dict[str, Any] = state.get("refilter", {})
    with _windows_log_into(tracker.run_id):
        for k, tokens in enumerate(wins):
            rec = begun[k] if k < len(begun) else None
            if rec is not None and "end" in rec:
                if rec["promoted"]:
                    continue
                break
            if rec is None:
                previous = begun[-1] if begun else None
                rec = {"index": k, "tokens": tokens, "start": previous["end"] if previous else first,
                       "init": str(previous["checkpoint"]) if previous else str(init), "data": str(work / "data")}
                if params.refilter and k == len(wins) - 1 and k > 0:
                    rates = pass_rates(work / f"window{k - 1}" / "policy", rows, tokens, rl, params, envs)
                    kept, refiltered = refilter(rows, rates, params)
                    if not kept:
                        raise UsageError(f"extend.refilter: every item reached pass rate {params.refilter_easy} "
                                         "or was synthetic and downsampled; raise refilter_easy or synthetic_keep")
                    rec["data"] = str(write_data(work / "data_last", kept, heldout))
                    state["refilter"] = refiltered
                begun.append(rec)
                _write_json(work / "windows.json", state)
            cfg = window_params(rl, params, k, wins, end=end)
            run = work / f"window{k}"
            settings = {**mitigations(cfg, params, k, tokens), "extend/refiltered": float(rec["data"] != str(work / "data"))}
            train_rl(cfg, rl_dir / "policy", rec["data"], run, envs, init=rec["init"],
                     stop=promotion_rule(run, k, wins, params, end, settings))
            last = latest_checkpoint(run / "checkpoints")
            reached = load_state(last)
            reason = reached.get("stopped") or f"step {reached['step']}: the budget of {params.steps} steps ended"
            rec.update(end=reached["step"], promoted=bool(reached.get("stopped")), reason=reason, checkpoint=str(last))
            _write_json(work / "windows.json", state)
            client = mlflow_client()
            if client is not None and tracker.run_id:
                client.set_tag(tracker.run_id, f"extend.window{k}", f"{tokens} tokens, steps {rec['start']}-{rec['end']}: {reason}")
            if not rec["promoted"]:
                break
            if torch.cuda.is_available():  # the next window builds its own trainer and rollout engine
                gc.collect()
                torch.cuda.empty_cache()
    return finish(out, rl_dir, begun, wins, rows, heldout, refiltered, params, ev, envs, tracker)


def finish(out: Path, rl_dir: Path, begun: list[dict], wins: list[int], rows: list[dict], heldout: list[dict],
           refiltered: dict[str, Any], params: ExtendParams, ev: EvalParams, envs: EnvParams,
           tracker: RunTracker) -> dict[str, Any]:
    """The extended policy, every step's metrics in one file, the closing comparison, Figure 4 and the
    report, written into ``out`` (and onto the MLflow run). The windows' checkpoints and policies go,
    except the last checkpoint (the extended run's weights and optimizer, as ``rl`` keeps its own)."""
    work, last = out / "checkpoints", begun[-1]
    if (work / f"window{last['index']}" / "policy").is_dir():
        tmp = out / "policy.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(work / f"window{last['index']}" / "policy", tmp)
        shutil.rmtree(out / "policy", ignore_errors=True)
        os.replace(tmp, out / "policy")
    for w in begun:
        shutil.rmtree(work / f"window{w['index']}" / "policy", ignore_errors=True)
        if w is not last:
            shutil.rmtree(work / f"window{w['index']}" / "checkpoints", ignore_errors=True)
    lines = read_metrics(work / "run") + [r for w in begun for r in read_metrics(work / f"window{w['index']}")]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(lines, key=lambda r: r["step"])))
    names = {"rl": rl_dir / "policy", "extend": out / "policy"}
    cmp = compare_long_replies(names, heldout, wins[0], ev, envs)
    (out / "long_replies.md").write_text(comparison_table(cmp, list(names)) + "\n")
    tasks = [t for t, s in params.tasks.items() if s.weight > 0]
    report = {
        "windows": [{k: w[k] for k in ("index", "tokens", "start", "end", "promoted", "reason")} for w in begun],
        "windows_planned": wins, "window_reached": last["tokens"], "promotions": sum(w["promoted"] for w in begun),
        "steps": last["end"] - begun[0]["start"], "tasks": tasks, "rows": len(rows), "refilter": refiltered,
        "long_replies": cmp,
    }
    _write_json(out / "report.json", report)
    figure4(read_metrics(out), report["windows"], tasks, out / "figure4.png",
            title=f"Length extension, windows {' -> '.join(map(str, wins[: len(begun)]))} tokens")
    client = mlflow_client()
    if client is not None and tracker.run_id:
        for name in ("figure4.png", "report.json", "long_replies.md"):
            client.log_artifact(tracker.run_id, str(out / name))
    tracker.close()
    return report


PARAMS = {"extend": ExtendParams, "rl": RLParams, "envs": EnvParams, "eval": EvalParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = stage_parser(__doc__, {"rl": "the RL stage's output folder (checkpoints/step_*, policy/)",
                                "data": "the RL data folder (tasks.curate.rl_data's output: mix.parquet, heldout.jsonl)"},
                      prog="python -m tasks.train.extend.train")
    args = ap.parse_args(argv)
    loaded = load(args.params, PARAMS, args.set)
    set_cores(loaded["rl"].threads)
    report = extend(args.rl, args.data, args.output, loaded["extend"], loaded["rl"], loaded["envs"], loaded["eval"])
    for w in report["windows"]:
        print(f"window {w['index']} ({w['tokens']} tokens), steps {w['start']}-{w['end']}: {w['reason']}")
    print((Path(args.output) / "long_replies.md").read_text())
    return report


if __name__ == "__main__":
    main()
