"""python -m tasks.curate.difficulty --input PATH --policy MODEL_DIR --output DIR [--params params.yaml] [--set KEY=VALUE]

Stage 5 of the math data pipeline (report section 4.1): "we use a strong reasoning model to compute
the pass@10 for each question and retain only those samples with a pass rate strictly between 0 and
0.9". Here the model is the current policy (an HF-format checkpoint + tokenizer, ours or any
transformers causal LM, sampled by ``tasks.train.policy.SamplingPolicy`` through
``model.generation.TorchEngine`` at the report's evaluation settings (temperature 1.0, top-p 0.95).

Each item gets ``k`` samples; a sample passes when its reward is >= ``pass_reward``. Rewards come
from the verifier of the task named in the item's ``task`` column (``tasks.envs.registry``), else
from ``tasks.envs.mathverify.verify_math(answer, <answer> of the response)``. The pass rate
``passes / k`` is written to every row (column ``pass_rate``); rows with ``lower < pass_rate < upper``
are kept, the rest rejected as ``too_hard`` (rate <= lower) or ``too_easy`` (rate >= upper).
Rows the policy cannot be asked are rejected before sampling, with a null ``pass_rate``:
``empty_question`` (null or blank), ``long_question`` (more than ``max_question_chars``
characters: issue 17 saw a 10 MB question make generation ask for 110 TB), ``empty_answer`` (a
math row, no ``task``, without a reference answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import numpy as np
import polars as pl
from tqdm import tqdm

from tasks.config import Params, exits_cleanly, load, param, stage_parser
from tasks.curate.io import INPUT_HELP, ROW, StageWriter, batches, count_rows, scan
from tasks.envs.params import EnvParams


@dataclass
class DifficultyParams(Params):
    """``difficulty``: pass@k of the current policy and the band of pass rates kept."""

    SECTION: ClassVar[str] = "difficulty"
    k: int = param(10, ge=1, help="samples per item (the report's pass@10)")
    temperature: float = param(1.0, ge=0.0, help="sampling temperature (the report's: 1.0)")
    top_p: float = param(0.95, gt=0.0, le=1.0, help="nucleus sampling (the report's: 0.95)")
    max_new_tokens: int = param(64, ge=1, help="reply budget; tiny default (CPU); at scale the RL window, e.g. 40960")
    lower: float = param(0.0, ge=0.0, le=1.0, help="keep lower < pass rate < upper (strictly)")
    upper: float = param(0.9, ge=0.0, le=1.0, help="see lower")
    pass_reward: float = param(1.0, help="a sample passes when its reward reaches this")
    batch_size: int = param(160, ge=1, help="sequences per generate call (prompts x k)")
    seed: int = param(0, help="the sampling generator's seed")
    chunk_size: int = param(1024, ge=1, help="rows per streamed batch")
    max_question_chars: int = param(4096, ge=1, help="longer questions are rejected as long_question; prompt memory "
                                                     "grows with length x batch_size (tiny policy, CPU: 160 prompts of "
                                                     "4096 chars peaked at 5.1 GB); the shipped tasks' longest is 2.7K")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")

    def check(self) -> None:
        if not self.lower < self.upper:
            raise self.fail("upper", self.upper, f"a number > lower ({self.lower})")


Verifier = Callable[[dict[str, Any], str], float]


class Policy(Protocol):
    """Anything that answers questions: ``k`` sampled responses for each of ``questions``
    (``tasks.train.policy.SamplingPolicy`` for a checkpoint)."""

    def sample(self, questions: list[str], k: int) -> list[list[str]]: ...


def task_verifier(envs: EnvParams) -> Verifier:
    """Score a row with the verifier of the task its ``task`` column names, else math-verify on its
    ``answer`` (the curated math rows); task settings from ``envs``."""
    from tasks.envs.base import extract_answer
    from tasks.envs.mathverify import verify_math
    from tasks.envs.registry import get_task

    tasks: dict[str, Any] = {}

    def verify(item: dict[str, Any], response: str) -> float:
        name = item.get("task")
        if not name:
            pred = extract_answer(response)
            return 1.0 if pred is not None and verify_math(item["answer"], pred, timeout_s=envs.math.timeout_s) else 0.0
        if name not in tasks:
            try:
                tasks[name] = get_task(name, envs)
            except KeyError as e:
                raise KeyError(f"row {item.get(ROW)}: {e.args[0]}") from None
        if isinstance(item.get("metadata"), str):
            item = {**item, "metadata": json.loads(item["metadata"])}
        return float(tasks[name].verify(item, response))

    return verify


def pass_rates(items: list[dict[str, Any]], policy: Policy, k: int, verifier: Verifier, pass_reward: float) -> np.ndarray:
    """[N] fraction of ``k`` sampled responses per item whose reward is >= ``pass_reward``."""
    responses = policy.sample([it["question"] for it in items], k)
    return np.array([sum(verifier(it, r) >= pass_reward for r in rs) / k for it, rs in zip(items, responses)])


def unaskable(df: pl.DataFrame, max_question_chars: int) -> list[str | None]:
    """The reason each row cannot be graded (null: ask the policy), first matching wins."""
    q = pl.col("question")
    no_task = pl.col("task").is_null() if "task" in df.columns else pl.lit(True)
    reason = (
        pl.when(q.is_null() | (q.str.strip_chars() == "")).then(pl.lit("empty_question"))
        .when(q.str.len_chars() > max_question_chars).then(pl.lit("long_question"))
        .when(no_task & (pl.col("answer").is_null() | (pl.col("answer").str.strip_chars() == "")))
        .then(pl.lit("empty_answer"))
        .otherwise(pl.lit(None, pl.String))
    )
    return df.select(reason).to_series().to_list()


def difficulty(input_path: str | Path, output_dir: str | Path, params: DifficultyParams, policy: Policy,
               verifier: Verifier) -> dict[str, Any]:
    """Write each item's pass@k rate and keep those strictly between ``lower`` and ``upper``."""
    k, lower, upper = params.k, params.lower, params.upper
    lf = scan(input_path)
    writer = StageWriter(output_dir, "difficulty", input_path)
    prompts_per_call = max(1, params.batch_size // k)
    total = count_rows(lf, input_path)
    template, hist = None, np.zeros(k + 1, np.int64)
    with tqdm(total=total, desc=f"difficulty pass@{k}", unit="item") as bar:
        for df in batches(lf, params.chunk_size, input_path):
            skip = unaskable(df, params.max_question_chars)
            ask = [i for i, r in enumerate(skip) if r is None]
            rows = df[ask].to_dicts()
            rates = np.full(df.height, np.nan)
            bar.update(df.height - len(ask))
            for lo in range(0, len(rows), prompts_per_call):
                chunk = rows[lo : lo + prompts_per_call]
                rates[ask[lo : lo + prompts_per_call]] = pass_rates(chunk, policy, k, verifier, params.pass_reward)
                bar.update(len(chunk))
            np.add.at(hist, np.rint(rates[ask] * k).astype(np.int64), 1)
            graded = np.where(rates <= lower, "too_hard", np.where(rates >= upper, "too_easy", None))
            reason = [s if s is not None else g for s, g in zip(skip, graded)]
            df = df.with_columns(pl.Series("pass_rate", rates, pl.Float64, nan_to_null=True))
            writer.write(df, list(reason))
            template = df if template is None else template
    if template is None:
        template = lf.head(0).collect().with_columns(pl.lit(None, pl.Float64).alias("pass_rate"))
    return writer.close(
        template.drop(ROW), k=k, bounds=[lower, upper],
        passes_histogram={f"{i}/{k}": int(c) for i, c in enumerate(hist)},
    )


PARAMS = {"difficulty": DifficultyParams, "envs": EnvParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, {"input": INPUT_HELP, "policy": "policy directory: HF-format checkpoint + tokenizer"},
                      prog="python -m tasks.curate.difficulty")
    args = ap.parse_args(argv)
    loaded = load(args.params, PARAMS, args.set)
    p = loaded["difficulty"]
    scan(args.input)  # bad input fails before a model is loaded
    from tasks.train.policy import SamplingPolicy

    policy = SamplingPolicy.load(args.policy, max_new_tokens=p.max_new_tokens, temperature=p.temperature,
                                 top_p=p.top_p, batch_size=p.batch_size, seed=p.seed, device=p.device)
    report = difficulty(args.input, args.output, p, policy, task_verifier(loaded["envs"]))
    print({k: report[k] for k in ("rows_in", "kept", "rejected", "by_reason", "passes_histogram", "rows_per_s")})


if __name__ == "__main__":
    main()
