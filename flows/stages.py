"""The stages of the M1 pipeline, in the report's order (section 4.1 data, sections 2-3 training).

This list is the DAG: ``dvc.yaml`` is generated from it (``python -m flows.dag --write``) and the
Prefect flow ``m1`` runs it. Each stage is a module's command line over named inputs and one output;
its code dependencies and params sections are derived from the module (``flows.dag``).
"""

from __future__ import annotations

from flows.dag import Stage

RAW = "data/raw/math"
CUR = "data/curated"
#: printed at the end of a pipeline run: the eval stage's table
SUMMARY = "runs/eval/table.md"

STAGES: list[Stage] = [
    Stage("raw_math", "tasks.curate.synth", output=RAW,
          description="generate the labelled, messy math QA corpus (stands in for scraped data)"),
    Stage("clean", "tasks.curate.clean", {"input": f"{RAW}/corpus.jsonl"}, f"{CUR}/clean",
          description="normalise; drop incomplete and malformed rows; split raw documents into QA pairs"),
    Stage("dedup", "tasks.curate.dedup", {"input": f"{CUR}/clean/kept.parquet", "sft": f"{RAW}/sft.jsonl"},
          f"{CUR}/dedup", description="exact, MinHash and embedding dedup across sources; strict RL/SFT separation"),
    Stage("decontaminate", "tasks.curate.decontaminate",
          {"input": f"{CUR}/dedup/kept.parquet", "benchmark": f"{RAW}/benchmark.jsonl"}, f"{CUR}/decontaminate",
          description="n-gram + embedding decontamination against HumanEval and the named test sets"),
    Stage("questions", "tasks.curate.questions", {"input": f"{CUR}/decontaminate/kept.parquet"}, f"{CUR}/questions",
          description="drop multi-part, proof and true/false items; MC to open-ended; answers must parse"),
    Stage("synlogic", "tasks.envs.synlogic.generate", output="data/synlogic",
          description="SynLogic items of every family over its levels (calibrate picks the levels RL sees)"),
    # alone: a curation process beside SFT's spinning threads on 2 cores held it at 12.6 s a step
    # (1.1 alone) for the 2.6 minutes they overlapped (LOG.md, issue 11)
    Stage("sft", "tasks.train.sft", output="runs/sft", gpu=True, alone=True,
          description="SFT the base policy on worked solutions of the whole task mix (reply format + steps)"),
    Stage("calibrate", "tasks.curate.calibrate", {"policy": "runs/sft/policy"}, "data/calibrate", gpu=True,
          description="SynLogic difficulty bounds: base (SFT) pass rate in (0, 0.5], strong pass@k > 0"),
    Stage("difficulty", "tasks.curate.difficulty",
          {"math": f"{CUR}/questions/kept.parquet", "synlogic": "data/synlogic/items.jsonl",
           "bounds": "data/calibrate/bounds.json", "policy": "runs/sft/policy"}, f"{CUR}/difficulty", gpu=True,
          description="pass@k of curated math, calibrated SynLogic and code items with the SFT policy; keep 0 < p < 0.9"),
    Stage("rl_data", "tasks.curate.rl_data",
          {"graded": f"{CUR}/difficulty", "benchmark": f"{RAW}/benchmark.jsonl"}, "data/rl",
          description="the mixed RL dataset, decontaminated against every held-out set, and the held-out sets"),
    # alone: beside calibrate and difficulty its judge trained with passive OpenMP threads, 1.7-3.3 s a
    # step even after they ended (the policy is fixed at process start; LOG.md, issue 11)
    Stage("genrm", "tasks.envs.genrm.stage", {"policy": "runs/sft/policy"}, "runs/genrm", gpu=True, alone=True,
          description="GenRM: label judge data, fine-tune the judge, measure it (accuracy, swap agreement, "
                      "best-of-N, longer-wins); Swiss-round references for the general tasks"),
    Stage("rl", "tasks.train.rl.train", {"policy": "runs/sft/policy", "data": "data/rl", "genrm": "runs/genrm"},
          "runs/rl", gpu=True,
          description="CISPO on the RL data by the curriculum's phases (rule-verified tasks, then GenRM-judged "
                      "general tasks mixed in)"),
    Stage("extend", "tasks.train.extend.train", {"rl": "runs/rl", "data": "data/rl"}, "runs/extend", gpu=True,
          description="staged length extension from RL's state: windows 40:48:...:80 x a base, promotion rule, mitigations"),
    Stage("eval", "tasks.train.evaluate",
          {"heldout": "data/rl/heldout.jsonl", "policy": ("runs/sft/policy", "runs/rl/policy", "runs/extend/policy")},
          "runs/eval", gpu=True,
          description="held-out accuracy per task family of each policy, 95% intervals; table and plot"),
]
