"""python -m tasks.difficulty --input PATH --output DIR --model MODEL_DIR [--params params.yaml]

Stage 5 of the math data pipeline (report section 4.1): "we use a strong reasoning model to compute
the pass@10 for each question and retain only those samples with a pass rate strictly between 0 and
0.9". Here the model is the current policy (an HF-format checkpoint + tokenizer, ours or any
transformers causal LM, loaded by ``tasks.rl.policy.load_policy``), sampled through
``model.generation.TorchEngine`` at the report's evaluation settings (temperature 1.0, top-p 0.95).

Each item gets ``k`` samples; a sample passes when its reward is >= ``pass_reward``. Rewards come
from ``tasks.base.TASKS[item["task"]].verify`` when the item has a ``task`` column naming a registered
task, else from ``tasks.mathverify.verify_math(answer, <answer> of the response)``. The pass rate
``passes / k`` is written to every row (column ``pass_rate``); rows with ``lower < pass_rate < upper``
are kept, the rest rejected as ``too_hard`` (rate <= lower) or ``too_easy`` (rate >= upper).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import polars as pl
from tqdm import tqdm

from tasks.curate.io import ROW, StageWriter, batches, exits_cleanly, load_params, scan, stage_cli

DEFAULTS: dict[str, Any] = {
    "k": 10,
    "temperature": 1.0,
    "top_p": 0.95,
    "max_new_tokens": 256,
    "lower": 0.0,
    "upper": 0.9,
    "pass_reward": 1.0,
    "batch_size": 32,
    "seed": 0,
    "chunk_size": 1024,
}

Verifier = Callable[[dict[str, Any], str], float]


class Policy(Protocol):
    """Anything that answers questions: ``k`` sampled responses for each of ``questions``."""

    def sample(self, questions: list[str], k: int) -> list[list[str]]: ...


class EnginePolicy:
    """A checkpoint sampled through ``TorchEngine``: ``batch_size`` sequences per ``generate`` call."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        temperature: float = 1.0,
        top_p: float = 0.95,
        max_new_tokens: int = 256,
        batch_size: int = 32,
        seed: int = 0,
    ):
        import torch

        from model.generation import SamplingParams, TorchEngine
        from tasks.rl.policy import encode_prompt, load_policy

        self.model, self.tok = load_policy(model_dir)
        self.model.eval()
        self.engine = TorchEngine(self.model, pad_token_id=self.tok.pad_token_id)
        self.params = SamplingParams(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
            stop_token_ids=(self.tok.eos_token_id,),
        )
        self.encode = lambda q: encode_prompt(self.tok, q)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, questions: list[str], k: int) -> list[list[str]]:
        import torch

        prompts = [self.encode(q) for q in questions for _ in range(k)]
        texts: list[str] = []
        with torch.no_grad():
            for lo in range(0, len(prompts), self.batch_size):
                out = self.engine.generate(prompts[lo : lo + self.batch_size], self.params, generator=self.generator)
                texts += [self.tok.decode(t, skip_special_tokens=False) for t in out.tokens]
        return [texts[i * k : (i + 1) * k] for i in range(len(questions))]


def default_verifier(item: dict[str, Any], response: str) -> float:
    """The item's task verifier when it names a registered ``task``, else math-verify on its answer."""
    task = item.get("task")
    if task:
        from tasks.base import get_task

        try:
            verifier = get_task(task)
        except KeyError as e:
            raise KeyError(f"row {item.get(ROW)}: {e.args[0]}") from None
        if isinstance(item.get("metadata"), str):
            item = {**item, "metadata": json.loads(item["metadata"])}
        return float(verifier.verify(item, response))
    from tasks.base import extract_answer
    from tasks.mathverify import verify_math

    pred = extract_answer(response)
    return 1.0 if pred is not None and verify_math(item["answer"], pred) else 0.0


def pass_rates(
    items: list[dict[str, Any]], policy: Policy, k: int, verifier: Verifier = default_verifier, pass_reward: float = 1.0
) -> np.ndarray:
    """[N] fraction of ``k`` sampled responses per item whose reward is >= ``pass_reward``."""
    responses = policy.sample([it["question"] for it in items], k)
    return np.array([sum(verifier(it, r) >= pass_reward for r in rs) / k for it, rs in zip(items, responses)])


def difficulty(
    input_path: str | Path,
    output_dir: str | Path,
    *,
    policy: Policy | None = None,
    model_dir: str | Path | None = None,
    verifier: Verifier = default_verifier,
    k: int = 10,
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_new_tokens: int = 256,
    lower: float = 0.0,
    upper: float = 0.9,
    pass_reward: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    chunk_size: int = 1024,
) -> dict[str, Any]:
    """Write each item's pass@k rate and keep those strictly between ``lower`` and ``upper``."""
    if not 0.0 <= lower < upper <= 1.0:
        raise ValueError(f"difficulty bounds: need 0 <= lower < upper <= 1, got lower={lower}, upper={upper}")
    lf = scan(input_path)  # bad input fails before a model is loaded
    if policy is None:
        if model_dir is None:
            raise ValueError("difficulty: pass a policy or a model_dir (HF-format checkpoint + tokenizer)")
        policy = EnginePolicy(model_dir, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                              batch_size=batch_size, seed=seed)
    writer = StageWriter(output_dir, "difficulty", input_path)
    prompts_per_call = max(1, batch_size // k)
    total = lf.select(pl.len()).collect().item()
    template, hist = None, np.zeros(k + 1, np.int64)
    with tqdm(total=total, desc=f"difficulty pass@{k}", unit="item") as bar:
        for df in batches(lf, chunk_size, input_path):
            rows = df.to_dicts()
            rates = np.zeros(len(rows))
            for lo in range(0, len(rows), prompts_per_call):
                rates[lo : lo + prompts_per_call] = pass_rates(rows[lo : lo + prompts_per_call], policy, k, verifier, pass_reward)
                bar.update(min(prompts_per_call, len(rows) - lo))
            np.add.at(hist, np.rint(rates * k).astype(np.int64), 1)
            reason = np.where(rates <= lower, "too_hard", np.where(rates >= upper, "too_easy", None)).astype(object)
            df = df.with_columns(pl.Series("pass_rate", rates, pl.Float64))
            writer.write(df, list(reason))
            template = df if template is None else template
    if template is None:
        template = lf.head(0).collect().with_columns(pl.lit(None, pl.Float64).alias("pass_rate"))
    return writer.close(
        template.drop(ROW), k=k, bounds=[lower, upper],
        passes_histogram={f"{i}/{k}": int(c) for i, c in enumerate(hist)},
    )


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    def extra(ap):
        ap.add_argument("--model", required=True, help="policy directory: HF-format checkpoint + tokenizer")

    ap = stage_cli("difficulty", __doc__, extra)
    ap.prog = "python -m tasks.difficulty"
    args = ap.parse_args(argv)
    params = {**DEFAULTS, **load_params("difficulty", args.params)}
    report = difficulty(args.input, args.output, model_dir=args.model, **params)
    print({k: report[k] for k in ("rows_in", "kept", "rejected", "by_reason", "passes_histogram", "rows_per_s")})


if __name__ == "__main__":
    main()
