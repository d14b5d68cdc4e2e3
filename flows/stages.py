"""The stages of the M1 pipeline, in the report's order (section 4.1 data, sections 2-3 training).

This list is the DAG: ``dvc.yaml`` is generated from it (``python -m flows.dag --write``) and the
Prefect flow ``m1`` runs it. Each stage is a module's command line over named inputs and one output;
its code dependencies and params sections are derived from the module (``flows.dag``).
"""

from __future__ import annotations

from flows.dag import Stage

RAW = "data/raw/math"
CUR = "data/curated"

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
          description="SynLogic items of every family over the calibrated difficulty ranges"),
    Stage("sft", "tasks.train.sft", output="runs/sft", gpu=True,
          description="SFT the base policy on worked solutions (reply format + steps)"),
    Stage("difficulty", "tasks.curate.difficulty",
          {"input": f"{CUR}/questions/kept.parquet", "policy": "runs/sft/policy"}, f"{CUR}/difficulty", gpu=True,
          description="pass@k with the current policy; keep 0 < pass rate < 0.9"),
    Stage("rl", "tasks.train.rl.train", {"policy": "runs/sft/policy"}, "runs/rl", gpu=True,
          description="CISPO on rule-verified tasks (the curriculum's first phase)"),
]
