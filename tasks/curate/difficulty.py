"""python -m tasks.curate.difficulty --math PATH --synlogic PATH --bounds PATH --policy MODEL_DIR --output DIR [--params params.yaml] [--set KEY=VALUE]

Stage 5 of the math data pipeline (report section 4.1): "we use a strong reasoning model to compute
the pass@10 for each question and retain only those samples with a pass rate strictly between 0 and
0.9". Here the model is the current policy (an HF-format checkpoint + tokenizer, ours or any
transformers causal LM, sampled by ``tasks.train.policy.SamplingPolicy`` through
``model.generation.TorchEngine`` at the report's evaluation settings (temperature 1.0, top-p 0.95).

The stage grades every source of RL data at once. ``DIR/pool.parquet`` gathers them, one row per
item with ``id, task, source, question, answer, difficulty, metadata`` (JSON text):

- ``curated``: the curated math questions (``--math``, the questions stage's kept rows; task ``math``);
- ``synlogic``: the SynLogic items (``--synlogic``) of the families in the calibrated bounds
  (``--bounds``, ``tasks.curate.calibrate``), at levels inside them, up to ``synlogic_items`` each;
- ``generated``: ``generated.<task>.items`` fresh items of each task named there (code_io's
  programs with test cases, arithmetic, procedural math), spread over its levels.

Held-out questions (``tasks.envs.heldout``) never enter the pool. ``report.json`` adds kept / too
easy / too hard per source and per task (``by_source``, ``by_task``); ``kept_by_task.png`` draws
the latter.

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

from tasks.config import Params, UsageError, exits_cleanly, load, param, stage_parser
from tasks.curate.io import INPUT_HELP, ROW, StageWriter, batches, count_rows, scan
from tasks.envs.params import EnvParams


@dataclass
class GeneratedSource(Params):
    """``difficulty.generated.<task>``: fresh items of a task graded with the rest."""

    SECTION: ClassVar[str] = "difficulty.generated.*"
    levels: tuple[int, ...] = param(ge=1, help="difficulty levels, items spread evenly over them")
    items: int = param(ge=1, help="items generated (held-out questions are then dropped)")


def _default_generated() -> dict[str, GeneratedSource]:
    return {"arithmetic": GeneratedSource(levels=(2,), items=48), "math": GeneratedSource(levels=(1,), items=32),
            "code_io": GeneratedSource(levels=(1, 2), items=40)}


@dataclass
class DifficultyParams(Params):
    """``difficulty``: pass@k of the current policy and the band of pass rates kept."""

    SECTION: ClassVar[str] = "difficulty"
    k: int = param(10, ge=1, help="samples per item (the report's pass@10)")
    temperature: float = param(1.0, ge=0.0, help="sampling temperature (the report's: 1.0)")
    top_p: float = param(0.95, gt=0.0, le=1.0, help="nucleus sampling (the report's: 0.95)")
    max_new_tokens: int = param(96, ge=1, help="reply budget; tiny default (CPU: the worked solutions of the levels "
                                               "SFT teaches are under 90 tokens); at scale the RL window, e.g. 40960")
    lower: float = param(0.0, ge=0.0, le=1.0, help="keep lower < pass rate < upper (strictly)")
    upper: float = param(0.9, ge=0.0, le=1.0, help="see lower")
    pass_reward: float = param(1.0, help="a sample passes when its reward reaches this")
    batch_size: int = param(160, ge=1, help="sequences per generate call and worker (prompts x k)")
    seed: int = param(0, help="the sampling generator's seed")
    chunk_size: int = param(1024, ge=1, help="rows per streamed batch")
    max_question_chars: int = param(4096, ge=1, help="longer questions are rejected as long_question; prompt memory "
                                                     "grows with length x batch_size (tiny policy, CPU: 160 prompts of "
                                                     "4096 chars peaked at 5.1 GB); the shipped tasks' longest is 2.7K")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")
    threads: int = param(2, ge=1, help="CPU cores: torch threads and single-thread generation workers; a fixed number, "
                                       "so results do not depend on the machine's cores")
    synlogic_items: int = param(40, ge=1, help="SynLogic items graded per family, spread over its calibrated levels")
    generated: dict[str, GeneratedSource] = param(default_factory=_default_generated,
                                                  help="tasks whose items the stage generates: code items, "
                                                       "arithmetic, procedural math")
    generated_seed: int = param(2, help="seed of the generated items; keep it apart from sft.item_seed")

    def check(self) -> None:
        if not self.lower < self.upper:
            raise self.fail("upper", self.upper, f"a number > lower ({self.lower})")


#: the reward of a response to an item; a verifier may also offer ``many(pairs) -> rewards`` for a batch
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
    pairs = [(it, r) for it, rs in zip(items, responses) for r in rs]
    many = getattr(verifier, "many", None)  # a batch at once (sandbox runs in parallel), where offered
    rewards = np.array(many(pairs) if many else [verifier(it, r) for it, r in pairs], dtype=np.float64)
    return (rewards.reshape(len(items), k) >= pass_reward).mean(axis=1)


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
    prompts_per_call = max(1, params.batch_size * getattr(policy, "workers", 1) // k)  # a batch per worker
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


POOL_COLUMNS = {"id": pl.String, "task": pl.String, "source": pl.String, "question": pl.String,
                "answer": pl.String, "difficulty": pl.Int64, "metadata": pl.String}


def _pool_rows(items, task: str, source: str) -> list[dict[str, Any]]:
    return [{"id": str(it["id"]), "task": task, "source": source, "question": it["question"],
             "answer": str(it["answer"]), "difficulty": it.get("difficulty"),
             "metadata": json.dumps(it.get("metadata") or {}, sort_keys=True)} for it in items]


def read_items(path: str | Path) -> list[dict[str, Any]]:
    """Task items from a JSONL file, each with ``task, id, question, answer, difficulty``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        missing = [k for k in ("task", "id", "question", "answer", "difficulty") if k not in item]
        if missing:
            raise UsageError(f"{path}:{n}: missing {missing}; a task item has task, id, question, answer, difficulty")
        items.append(item)
    return items


def build_pool(math_path: str | Path, synlogic_path: str | Path, bounds_path: str | Path,
               params: DifficultyParams, envs: EnvParams) -> pl.DataFrame:
    """Every source of RL data as one frame (``POOL_COLUMNS``), held-out questions left out."""
    from tasks.envs.heldout import is_held_out
    from tasks.envs.registry import get_tasks

    curated = scan(math_path).collect()
    rows = _pool_rows(({"id": r.get("id") or f"row{r[ROW]}", "question": r["question"], "answer": r["answer"]}
                       for r in curated.iter_rows(named=True)), "math", "curated")
    bounds_path = Path(bounds_path)
    try:
        bounds = json.loads(bounds_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{bounds_path}: cannot read the calibrated bounds ({e}); run tasks.curate.calibrate") from None
    by_level: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for item in read_items(synlogic_path):  # JSON lines: metadata differs in shape from family to family
        by_level.setdefault((item["task"], item["difficulty"]), []).append(item)
    for task, b in sorted(bounds.items()):
        levels = [lv for lv in range(b["low"], b["high"] + 1) if (task, lv) in by_level]
        if not levels:
            raise UsageError(f"{synlogic_path}: no {task} items at levels {b['low']}-{b['high']} ({bounds_path}); "
                             "generate them (synlogic.generate) or recalibrate")
        for i, lv in enumerate(levels):  # spread evenly over the levels, like the generator
            count = params.synlogic_items // len(levels) + (i < params.synlogic_items % len(levels))
            rows += _pool_rows(by_level[(task, lv)][:count], task, "synlogic")
    for name, task in get_tasks(params.generated, envs, where="difficulty.generated").items():
        spec = params.generated[name]
        lo, hi = task.difficulty_range
        if not all(lo <= lv <= hi for lv in spec.levels):
            raise params.fail(f"generated.{name}.levels", list(spec.levels), f"levels inside the task's range [{lo}, {hi}]")
        for i, lv in enumerate(spec.levels):
            count = spec.items // len(spec.levels) + (i < spec.items % len(spec.levels))
            rows += _pool_rows(task.generate(count, seed=params.generated_seed, difficulty=lv), name, "generated")
    pool = pl.DataFrame(rows, schema=POOL_COLUMNS)
    return pool.filter(~pl.col("question").map_elements(is_held_out, return_dtype=pl.Boolean))


def counts_by(out_dir: str | Path, column: str) -> dict[str, dict[str, int]]:
    """``{value: {kept, too_easy, too_hard}}`` of a finished stage's rows, by ``column``."""
    out = Path(out_dir)
    frames = [pl.read_parquet(out / "kept.parquet").select(column).with_columns(reason=pl.lit("kept"))]
    if (out / "rejected.parquet").exists():
        frames.append(pl.read_parquet(out / "rejected.parquet").select(column, "reason"))
    table: dict[str, dict[str, int]] = {}
    for value, reason, n in pl.concat(frames).group_by(column, "reason").len().iter_rows():
        table.setdefault(value, {"kept": 0, "too_easy": 0, "too_hard": 0})[reason] = n
    return dict(sorted(table.items()))


def plot_counts(by_task: dict[str, dict[str, int]], path: str | Path) -> None:
    """Stacked bars: kept / too easy / too hard items per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(by_task)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 3.6))
    bottom = np.zeros(len(names))
    for reason, colour in (("kept", "tab:green"), ("too_easy", "tab:blue"), ("too_hard", "tab:red")):
        values = np.array([by_task[n][reason] for n in names])
        ax.bar(names, values, bottom=bottom, label=reason.replace("_", " "), color=colour)
        bottom += values
    ax.set_ylabel("items")
    ax.set_title("pass@k grading with the SFT policy: kept 0 < p < upper")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=40, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


PARAMS = {"difficulty": DifficultyParams, "envs": EnvParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, {"math": "curated math questions: " + INPUT_HELP,
                                "synlogic": "SynLogic items (JSONL of the synlogic stage)",
                                "bounds": "calibrated bounds (bounds.json of tasks.curate.calibrate)",
                                "policy": "policy directory: HF-format checkpoint + tokenizer"},
                      prog="python -m tasks.curate.difficulty")
    args = ap.parse_args(argv)
    loaded = load(args.params, PARAMS, args.set)
    p, envs = loaded["difficulty"], loaded["envs"]
    pool = build_pool(args.math, args.synlogic, args.bounds, p, envs)  # bad input fails before a model is loaded
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    pool.write_parquet(out / "pool.parquet")
    from model.sharded import set_cores
    from tasks.envs.scoring import Scorer, item_from_row
    from tasks.train.policy import SamplingPolicy

    set_cores(p.threads)
    policy = SamplingPolicy.load(args.policy, max_new_tokens=p.max_new_tokens, temperature=p.temperature,
                                 top_p=p.top_p, batch_size=p.batch_size, seed=p.seed, device=p.device)
    scorer = Scorer(envs, workers=p.threads)

    def verify(item: dict[str, Any], response: str) -> float:
        return scorer.score(item_from_row(item), response)

    verify.many = lambda pairs: scorer.score_many([(item_from_row(it), r) for it, r in pairs])
    report = difficulty(out / "pool.parquet", out, p, policy, verify)
    report.update(by_source=counts_by(out, "source"), by_task=counts_by(out, "task"), verifier_calls=scorer.verified)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    plot_counts(report["by_task"], out / "kept_by_task.png")
    print({k: report[k] for k in ("rows_in", "kept", "rejected", "by_reason", "passes_histogram", "rows_per_s")})
    for source, c in report["by_source"].items():
        print(f"{source:>10}: kept {c['kept']}, too easy {c['too_easy']}, too hard {c['too_hard']}")


if __name__ == "__main__":
    main()
