"""python -m tasks.calibrate --base MODEL_DIR --strong MODEL_DIR --tasks a,b --params params.yaml

Difficulty calibration of the SynLogic tasks (report section 4.1): for each task, the lower bound
is the lowest level where the base model's pass rate lies in (0, 0.5], the upper bound the highest
level where a stronger policy (a longer-trained or larger checkpoint) still has pass@k > 0. Both
are written to ``synlogic.difficulty.<task>: {low, high}`` in params.yaml; every other line of the
file is left as it was.

``calibrate`` is a pure function of a ``pass_rate(task, difficulty, policy)`` callable, so any
policy (a model, a stub in tests, an API) can be plugged in; ``ModelPolicy`` samples through
``model.generation.TorchEngine``.

Fallbacks, where no level meets a criterion: if the base model never scores in (0, 0.5], the
lower bound is the first level it fails outright (rate 0), else (it passes every level above 0.5)
the top level; if the strong policy solves nothing at any level, the upper bound equals the lower
bound. The upper bound is never below the lower bound.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any, Callable, Sequence

import yaml

#: (task, difficulty, policy name) -> per-item share of sampled responses that earn reward 1.0
PassRate = Callable[[str, int, str], Sequence[float]]


@dataclass
class Bounds:
    low: int
    high: int
    base_rate: dict[int, float] = field(default_factory=dict)  # mean pass rate per level evaluated
    strong_pass: dict[int, float] = field(default_factory=dict)  # pass@k per level evaluated


def lower_bound(rate: Callable[[int], Sequence[float]], levels: Sequence[int],
                max_base_rate: float = 0.5) -> tuple[int, dict[int, float]]:
    """The lowest level whose mean base pass rate lies in (0, max_base_rate], scanning upwards and
    stopping there; the fallbacks of the module docstring otherwise. Also the rates seen."""
    ordered = sorted(levels)
    if not ordered:
        raise ValueError("no difficulty levels to calibrate")
    seen: dict[int, float] = {}
    for lv in ordered:
        seen[lv] = mean(rate(lv))
        if 0.0 < seen[lv] <= max_base_rate:
            return lv, seen
    failed = [lv for lv in ordered if seen[lv] == 0.0]
    return (failed[0] if failed else ordered[-1]), seen


def upper_bound(rate: Callable[[int], Sequence[float]], levels: Sequence[int],
                low: int) -> tuple[int, dict[int, float]]:
    """The highest level (not below ``low``) where the strong policy's pass@k is above 0, scanning
    downwards and stopping there; ``low`` when there is none. Also the pass@k seen per level.

    Each per-item share is over k samples, so an item's pass@k is 1 when its share is above 0
    and the level's pass@k is the mean over items."""
    seen: dict[int, float] = {}
    for lv in sorted((lv for lv in levels if lv >= low), reverse=True):
        seen[lv] = mean(float(r > 0.0) for r in rate(lv))
        if seen[lv] > 0.0:
            return lv, seen
    return low, seen


def calibrate(pass_rate: PassRate, levels: dict[str, Sequence[int]], *, base: str = "base",
              strong: str = "strong", max_base_rate: float = 0.5) -> dict[str, Bounds]:
    """Each task's ``[low, high]`` from the two policies' pass rates over its levels."""
    out = {}
    for task, task_levels in levels.items():
        low, base_rate = lower_bound(lambda lv: pass_rate(task, lv, base), task_levels, max_base_rate)
        high, strong_pass = upper_bound(lambda lv: pass_rate(task, lv, strong), task_levels, low)
        out[task] = Bounds(low=low, high=high, base_rate=base_rate, strong_pass=strong_pass)
    return out


_SECTION_RE = re.compile(r"^synlogic:\s*(#.*)?$")
_TOP_RE = re.compile(r"^\S")  # a top-level key or a column-0 comment ends the section


def write_bounds(params_path: str | Path, bounds: dict[str, tuple[int, int]],
                 full_ranges: dict[str, tuple[int, int]] | None = None) -> None:
    """Set ``synlogic.difficulty.<task>`` for the given tasks, editing only that block's lines.

    Entries of other tasks are kept. Without a ``synlogic:`` section (or its ``difficulty:``
    block) one is appended, listing ``full_ranges`` for tasks not calibrated yet.
    """
    path = Path(params_path)
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = next((i for i, line in enumerate(lines) if _SECTION_RE.match(line)), None)
    if start is None:
        lines += ["\n", "# SynLogic tasks (tasks/synlogic): difficulty bounds written by "
                  "`python -m tasks.calibrate`.\n", "synlogic:\n"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if _TOP_RE.match(lines[i])), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    block = next((i for i in range(start + 1, end) if re.match(r"^  difficulty:", lines[i])), None)
    entries = dict(full_ranges or {})
    if block is None:
        lines.insert(end, "  difficulty:\n")
        block, block_end = end, end + 1
    else:
        block_end = next((i for i in range(block + 1, end)
                          if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= 2), end)
        old = yaml.safe_load("".join(lines[block:block_end])) or {}
        entries.update({k: (v["low"], v["high"]) for k, v in (old.get("difficulty") or {}).items()})
    entries.update(bounds)
    body = [f"    {task}: {{low: {lo}, high: {hi}}}\n" for task, (lo, hi) in sorted(entries.items())]
    lines = lines[:block + 1] + body + lines[block_end:]
    new_text = "".join(lines)
    parsed = yaml.safe_load(new_text)["synlogic"]["difficulty"]
    want = {t: {"low": lo, "high": hi} for t, (lo, hi) in entries.items()}
    if parsed != want:
        raise RuntimeError(f"{path}: rewriting synlogic.difficulty did not round-trip")
    path.write_text(new_text)


class ModelPolicy:
    """A checkpoint that answers questions (``tasks.difficulty``'s ``Policy``: ``sample(questions, k)``).

    ``engine`` follows ``model.generation.TorchEngine``'s contract; ``encode`` builds the chat
    prompt's ids and ``decode`` turns sampled ids back into text with special tokens kept, so the
    answer tags survive.
    """

    def __init__(self, engine, encode: Callable[[str], list[int]],
                 decode: Callable[[list[int]], str], sampling: Any, *, batch_size: int = 32,
                 seed: int = 0, device: str = "cpu"):
        self.engine, self.encode, self.decode = engine, encode, decode
        self.sampling, self.batch_size, self.seed, self.device = sampling, batch_size, seed, device

    @classmethod
    def load(cls, model_dir: str | Path, settings: dict[str, Any], device: str = "cpu") -> ModelPolicy:
        """A policy directory (``tasks.rl.policy.save_policy``: our M1 or any HF causal LM)."""
        from model.generation import SamplingParams, TorchEngine
        from tasks.rl.policy import encode_prompt, load_policy

        model, tok = load_policy(model_dir)
        model = model.to(device).eval()
        sampling = SamplingParams(max_new_tokens=settings["max_new_tokens"],
                                  temperature=settings["temperature"], top_p=settings["top_p"],
                                  stop_token_ids=(tok.eos_token_id,))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return cls(TorchEngine(model, pad_token_id=pad), lambda q: encode_prompt(tok, q),
                   lambda ids: tok.decode(ids, skip_special_tokens=False), sampling,
                   batch_size=settings["batch_size"], seed=settings["seed"], device=device)

    def sample(self, questions: list[str], k: int) -> list[list[str]]:
        """``k`` sampled responses per question."""
        import torch

        prompts = [self.encode(q) for q in questions for _ in range(k)]
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        texts: list[str] = []
        with torch.no_grad():
            for i in range(0, len(prompts), self.batch_size):
                out = self.engine.generate(prompts[i:i + self.batch_size], self.sampling,
                                           generator=generator)
                texts += [self.decode(ids) for ids in out.tokens]
        return [texts[j * k:(j + 1) * k] for j in range(len(questions))]


def policy_pass_rate(policies: dict[str, Any], samples: dict[str, int], *, items: int,
                     seed: int = 0) -> PassRate:
    """A ``PassRate`` that generates ``items`` items per level and samples each policy on them.

    ``policies`` maps a name to anything with ``sample(questions, k) -> k responses each``.
    """
    from tasks.synlogic import TASKS

    def pass_rate(task: str, difficulty: int, policy: str) -> list[float]:
        batch = TASKS[task].generate(items, seed, difficulty)
        responses = policies[policy].sample([it["question"] for it in batch], samples[policy])
        return [mean(float(TASKS[task].verify(it, r) == 1.0) for r in rs)
                for it, rs in zip(batch, responses)]

    return pass_rate


def main(argv: list[str] | None = None) -> dict[str, Bounds]:
    from tqdm import tqdm

    from tasks.synlogic import TASKS
    from tasks.synlogic.base import SynLogicTask
    from tasks.synlogic.schedule import load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="checkpoint directory of the base model")
    parser.add_argument("--strong", required=True, help="checkpoint directory of the strong policy")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all SynLogic)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--report", default="", help="optional JSON file for the per-level rates")
    args = parser.parse_args(argv)

    settings = load_params(args.params)["calibrate"]
    synlogic = sorted(n for n, t in TASKS.items() if isinstance(t, SynLogicTask))
    names = [t for t in args.tasks.split(",") if t] or synlogic
    unknown = [t for t in names if t not in synlogic]
    if unknown:
        raise SystemExit(f"--tasks: unknown SynLogic task(s) {unknown}; known: {', '.join(synlogic)}")
    # one checkpoint in memory at a time: every lower bound first, then every upper bound
    lows: dict[str, tuple[int, dict[int, float]]] = {}
    policy = ModelPolicy.load(args.base, settings, args.device)
    rate = policy_pass_rate({"base": policy}, {"base": settings["base_samples"]},
                            items=settings["items"], seed=settings["seed"])
    for task in tqdm(names, desc="calibrate base"):
        lo, hi = TASKS[task].difficulty_range
        lows[task] = lower_bound(lambda lv: rate(task, lv, "base"), range(lo, hi + 1),
                                 settings["max_base_rate"])
    del policy, rate
    policy = ModelPolicy.load(args.strong, settings, args.device)
    rate = policy_pass_rate({"strong": policy}, {"strong": settings["strong_samples"]},
                            items=settings["items"], seed=settings["seed"])
    results = {}
    for task in tqdm(names, desc="calibrate strong"):
        lo, hi = TASKS[task].difficulty_range
        low, base_rate = lows[task]
        high, strong_pass = upper_bound(lambda lv: rate(task, lv, "strong"), range(lo, hi + 1), low)
        results[task] = Bounds(low=low, high=high, base_rate=base_rate, strong_pass=strong_pass)
    full = {n: TASKS[n].difficulty_range for n in synlogic}
    write_bounds(args.params, {t: (b.low, b.high) for t, b in results.items()}, full)
    for task, b in results.items():
        print(f"{task:24s} low {b.low}  high {b.high}  base {b.base_rate}  strong pass@k {b.strong_pass}")
    if args.report:
        Path(args.report).write_text(json.dumps({t: vars(b) for t, b in results.items()}, indent=1))
    return results


if __name__ == "__main__":
    main()
