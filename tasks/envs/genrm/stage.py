"""The generative reward model stage (report section 4.2): label judge data, fine-tune the judge,
measure it, and choose the general prompts' references by Swiss-round tournaments.

    python -m tasks.envs.genrm.stage --policy runs/sft/policy --output runs/genrm [--params params.yaml]
        [--set train.steps=100] [--set eval.n=16]

Writes into the output directory:

- ``data/judge_train.jsonl`` (``{question: judging prompt, response: verdict}``, what
  ``tasks.train.sft`` trains on) and ``data/eval_{grade,pairs,length}.jsonl`` (held-out, labelled);
- ``judge/policy/``: the judge (HF format: our M1 model or any HF causal LM), trained by
  ``tasks.train.sft``, which checkpoints under ``judge/checkpoints/`` (a rerun resumes);
- ``general.jsonl``: ``open_prompt`` and ``instruct`` items whose reference answer won a Swiss round
  among their candidates under the judge: the pool the RL stage's general tasks draw from;
- ``report.json``, ``report.md`` (a table) and ``judge.png``: accuracy in both modes, position-swap
  agreement, best-of-N with the policy's samples vs pass@N vs random choice, the longer-wins rate
  on equal-quality pairs, and the references' quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from model.sharded import set_cores
from tasks.config import UsageError, exits_cleanly, load, stage_parser
from tasks.envs.genrm.data import build_examples, write_examples, write_sft_jsonl
from tasks.envs.genrm.finetune import train_judge
from tasks.envs.genrm.evaluate import (best_of_n, grade_accuracy, longer_wins, pair_accuracy, reference_quality,
                                       write_report)
from tasks.envs.genrm.general import INSTRUCT, OPEN_PROMPT, choose_references
from tasks.envs.genrm.judge import Judge
from tasks.envs.genrm.params import GenRMParams
from tasks.envs.params import EnvParams


def general_pool(p: GenRMParams, judge: Judge) -> dict[str, list[dict[str, Any]]]:
    """Items of the general tasks with Swiss-round references: ``swiss.prompts`` open prompts and as
    many instruct prompts spread over 1..``general.max_constraints`` constraints."""
    pools = {OPEN_PROMPT.name: OPEN_PROMPT.generate(p.swiss.prompts, seed=p.seed, difficulty=1)}
    levels = range(1, p.general.max_constraints + 1)
    pools[INSTRUCT.name] = [it for d in levels
                            for it in INSTRUCT.generate(-(-p.swiss.prompts // len(levels)), seed=p.seed, difficulty=d)]
    for name, items in pools.items():
        choose_references(items, judge, p.swiss, seed=p.seed)
        for it in items:
            it["task"] = name
    return pools


def run_genrm(p: GenRMParams, envs: EnvParams, policy_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """The whole stage; returns the report (also written to ``out_dir``)."""
    from tasks.envs.registry import get_task
    from tasks.train.policy import SamplingPolicy
    from tasks.train.tracking import RunTracker

    out = Path(out_dir)
    train = build_examples(p.data, p.seed, "train")["train"]
    held_out = build_examples(p.data, p.seed, "eval")
    write_sft_jsonl(train, out / "data" / "judge_train.jsonl")
    for name, examples in held_out.items():
        write_examples(examples, out / "data" / f"eval_{name}.jsonl")
    judge_dir = train_judge(p, out / "data" / "judge_train.jsonl", out / "judge")

    judge = Judge.load(judge_dir, p.judge)
    report: dict[str, Any] = {"train_examples": len(train), "grade": grade_accuracy(judge, held_out["grade"]),
                              "pairs": pair_accuracy(judge, held_out["pairs"]),
                              "length": longer_wins(judge, held_out["length"])}
    e = p.eval
    task = get_task(e.task, envs)
    policy = SamplingPolicy.load(policy_dir, max_new_tokens=e.max_new_tokens, temperature=e.temperature, top_p=e.top_p,
                                 batch_size=e.batch_size, seed=p.seed, device=p.judge.device)
    items = task.generate(e.items, seed=e.item_seed, difficulty=e.difficulty)
    report["best_of_n"] = best_of_n(judge, policy, task, items, e.n)
    pools = general_pool(p, judge)
    tasks = {OPEN_PROMPT.name: OPEN_PROMPT, INSTRUCT.name: INSTRUCT}
    report["references"] = {name: reference_quality(items, tasks[name].oracle) for name, items in pools.items()}
    with open(out / "general.jsonl", "w") as f:
        for items in pools.values():
            f.writelines(json.dumps(it) + "\n" for it in items)
    report["judge"] = judge.stats.as_metrics()
    report["malformed_reasons"] = dict(judge.stats.reasons)
    write_report(report, out)

    tracker = RunTracker(out, experiment=p.experiment, run_name="genrm-eval", params=p.to_dict())
    tracker.log(0, flat_metrics(report))
    tracker.close()
    return report


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The report's headline numbers as MLflow metrics."""
    m = {"genrm/grade_accuracy": report["grade"]["accuracy"],
         "genrm/grade_correctness_accuracy": report["grade"]["correctness_accuracy"],
         "genrm/pair_accuracy": report["pairs"]["accuracy"], "genrm/swap_agreement": report["pairs"]["swap_agreement"],
         "genrm/longer_wins": report["length"]["longer_wins"], "genrm/best_of_n": report["best_of_n"]["best_of_n"],
         "genrm/pass_at_n": report["best_of_n"]["pass_at_n"], "genrm/random_choice": report["best_of_n"]["random"]}
    for name, r in report["references"].items():
        m[f"genrm/reference_is_best/{name}"] = r["reference_is_best"]
    return {**m, **{f"genrm/{k}": v for k, v in report["judge"].items()}}


PARAMS = {"genrm": GenRMParams, "envs": EnvParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, {"policy": "policy directory whose samples the judge picks from (best-of-N)"},
                      prog="python -m tasks.envs.genrm.stage")
    args = ap.parse_args(argv)
    loaded = load(args.params, PARAMS, args.set)
    set_cores(loaded["genrm"].threads)
    if not (Path(args.policy) / "config.json").exists():
        raise UsageError(f"--policy {args.policy}: no config.json; expected a policy saved by tasks.train.sft")
    report = run_genrm(loaded["genrm"], loaded["envs"], args.policy, args.output)
    print((Path(args.output) / "report.md").read_text())
    print({k: round(v, 4) for k, v in flat_metrics(report).items() if "/judge/" not in k})


if __name__ == "__main__":
    main()
