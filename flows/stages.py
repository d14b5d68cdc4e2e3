"""The stages of the M1 pipeline, in the report's order (section 4.1 data, sections 2-3 training).

This list is the DAG: ``dvc.yaml`` is generated from it (``python -m flows.dag --write``) and the
Prefect flow ``m1`` runs it. Each stage is a module's command line over files; its settings are the
params.yaml keys listed (each stage reads only its own section).
"""

from __future__ import annotations

from flows.dag import Stage

RAW = "data/raw/math"
CUR = "data/curated"

STAGES: list[Stage] = [
    Stage(
        "raw_math", "tasks.curate.synth", ("--output", RAW, "--n-base", "200"),
        deps=(), outs=(RAW,), code=("tasks/curate/synth.py",),
        description="generate the labelled, messy math QA corpus (stands in for scraped data; about 450 rows)",
    ),
    Stage(
        "clean", "tasks.curate.clean",
        ("--input", f"{RAW}/corpus.jsonl", "--output", f"{CUR}/clean", "--params", "params.yaml"),
        deps=(f"{RAW}/corpus.jsonl",), outs=(f"{CUR}/clean",), params=("curate.clean",),
        code=("tasks/curate/clean.py", "tasks/curate/extract.py", "tasks/curate/io.py"),
        description="normalise; drop incomplete and malformed rows; split raw documents into QA pairs",
    ),
    Stage(
        "dedup", "tasks.curate.dedup",
        ("--input", f"{CUR}/clean/kept.parquet", "--output", f"{CUR}/dedup",
         "--sft", f"{RAW}/sft.jsonl", "--params", "params.yaml"),
        deps=(f"{CUR}/clean/kept.parquet", f"{RAW}/sft.jsonl"), outs=(f"{CUR}/dedup",),
        params=("curate.dedup",),
        code=("tasks/curate/dedup.py", "tasks/curate/minhash.py", "tasks/curate/embed.py", "tasks/curate/io.py"),
        description="exact, MinHash and embedding dedup across sources; strict RL/SFT separation",
    ),
    Stage(
        "decontaminate", "tasks.curate.decontaminate",
        ("--input", f"{CUR}/dedup/kept.parquet", "--output", f"{CUR}/decontaminate",
         "--benchmark", f"{RAW}/benchmark.jsonl", "--params", "params.yaml"),
        deps=(f"{CUR}/dedup/kept.parquet", f"{RAW}/benchmark.jsonl"), outs=(f"{CUR}/decontaminate",),
        params=("curate.decontaminate",),
        code=("tasks/curate/decontaminate.py", "tasks/curate/embed.py", "tasks/curate/io.py"),
        description="n-gram + embedding decontamination against HumanEval and the named test sets",
    ),
    Stage(
        "questions", "tasks.curate.questions",
        ("--input", f"{CUR}/decontaminate/kept.parquet", "--output", f"{CUR}/questions", "--params", "params.yaml"),
        deps=(f"{CUR}/decontaminate/kept.parquet",), outs=(f"{CUR}/questions",),
        params=("curate.questions",),
        code=("tasks/curate/questions.py", "tasks/mathverify.py", "tasks/curate/io.py"),
        description="drop multi-part, proof and true/false items; MC to open-ended; answers must parse",
    ),
    Stage(
        "synlogic", "tasks.synlogic.generate",
        ("--params", "params.yaml", "--output", "data/synlogic/items.jsonl"),
        deps=(), outs=("data/synlogic/items.jsonl",), params=("synlogic",),
        code=("tasks/synlogic",),
        description="SynLogic items of every family over the calibrated difficulty ranges",
    ),
    Stage(
        "sft", "tasks.sft", ("--config", "params.yaml", "--out-dir", "runs/sft"),
        deps=(), outs=("runs/sft",), params=("sft",),
        code=("tasks/sft.py", "tasks/rl/policy.py", "tasks/arithmetic.py", "model", "kernels"),
        gpu=True, description="SFT the base policy on worked solutions (reply format + steps)",
    ),
    Stage(
        "difficulty", "tasks.difficulty",
        ("--input", f"{CUR}/questions/kept.parquet", "--model", "runs/sft/policy",
         "--output", f"{CUR}/difficulty", "--params", "params.yaml"),
        deps=(f"{CUR}/questions/kept.parquet", "runs/sft"), outs=(f"{CUR}/difficulty",),
        params=("difficulty",), code=("tasks/difficulty.py", "model", "kernels"),
        gpu=True, description="pass@k with the current policy; keep 0 < pass rate < 0.9",
    ),
    Stage(
        "rl", "tasks.rl.train",
        ("--config", "params.yaml", "--policy", "runs/sft/policy", "--out-dir", "runs/rl"),
        deps=("runs/sft",), outs=("runs/rl",), params=("rl",),
        code=("tasks/rl", "tasks/arithmetic.py", "model", "kernels"),
        gpu=True, description="CISPO on rule-verified tasks (the curriculum's first phase)",
    ),
]
