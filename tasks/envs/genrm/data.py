"""Labelled judging examples: the judge's training data and its held-out benchmarks (report 4.2.1-4.2.2).

What the project can label (``tasks.envs.genrm.world``):

- grade mode (a reference exists): answers to ``arithmetic`` and ``math`` items whose value (same,
  near miss, wrong, none) and form (plain, another form, extra words, hedged) are drawn apart; some
  with padded reasoning (same grade, longer);
- pairwise mode (no reference): two answers to an ``open_prompt`` or ``instruct`` prompt (world
  replies), label = sign of the quality difference; ``length`` pairs of equal quality and different
  length (label 0); ``adversarial`` pairs where the longer answer is the worse one.

The judge is trained to write a short rationale before its verdict (``"148 vs 148: same"``,
``"A 2, B 3"``): the annotator's reasons, which give every example many supervised tokens instead of
one. Every pair is written in both positions (position-switched consistent judgment).

    train = build_examples(params.data, seed=0, split="train")      # list[Example]
    write_sft_jsonl(train, "runs/genrm/judge_train.jsonl")          # {"question", "response"} rows
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.envs.arithmetic import HELD_OUT_SEED, Arithmetic, worked_solution
from tasks.envs.genrm.general import CONSTRAINTS, InstructTask, OpenPromptTask, satisfy
from tasks.envs.genrm.params import JudgeDataParams
from tasks.envs.genrm.verdict import grade_prompt, pair_prompt, verdict_reply
from tasks.envs.genrm.world import MAX_FACTS, graded_answer, pad, quality, reply
from tasks.envs.math_tasks import MathTask


@dataclass
class Example:
    """One judging prompt with its label and the rationale the judge writes before its verdict.
    ``mode`` grade | pair; for pairs ``first`` / ``second`` are the two answers (``label``: 1 first
    better, 0 similar, -1 worse), for grades ``first`` is the response and ``second`` the reference."""

    mode: str
    kind: str
    question: str
    first: str
    second: str
    label: int
    rationale: str

    @property
    def prompt(self) -> str:
        if self.mode == "grade":
            return grade_prompt(self.question, self.second, self.first)
        return pair_prompt(self.question, self.first, self.second)

    def swapped(self) -> Example:
        a, b = self.rationale.removeprefix("A ").split(", B ")
        return Example(self.mode, self.kind, self.question, self.second, self.first, -self.label, f"A {b}, B {a}")


#: seeds of held-out examples start here (arithmetic: its held-out operand pairs)
EVAL_SEED = HELD_OUT_SEED


def _padded_steps(rng: random.Random, steps: str, extra: int) -> str:
    """Worked steps made longer without changing them: a re-check of some steps, or filler."""
    parts = steps.split()
    for _ in range(extra):
        parts.insert(rng.randint(0, len(parts)), rng.choice(["check:", rng.choice(parts), "ok,", "so"]))
    return " ".join(parts)


def _verifiable_item(rng: random.Random, p: JudgeDataParams, seed: int) -> tuple[str, str, str]:
    """(question, reference answer, worked steps) of an arithmetic or short math item."""
    if rng.random() < p.math_share:
        while True:
            it = MathTask().generate(1, seed=seed * 7919 + rng.randrange(10**6), difficulty=1)[0]
            question = it["question"].split("\n")[0]
            if len(question) <= 90:
                return question, it["answer"], rng.choice(["let me solve it", "work it out", "compute"])
    d = rng.choice(p.arithmetic_difficulty)
    it = Arithmetic().generate(1, seed=seed if seed >= EVAL_SEED else rng.randrange(EVAL_SEED), difficulty=d)[0]
    steps = worked_solution(it["metadata"]["a"], it["metadata"]["b"]).split("</think>")[0].removeprefix("<think>")
    return it["question"], it["answer"], steps


def _response(steps: str, answer: str | None) -> str:
    return f"<think>{steps}</think>" + (f"<answer>{answer}</answer>" if answer is not None else "")


def grade_examples(p: JudgeDataParams, n: int, seed: int) -> list[Example]:
    """``n`` grade-mode examples (``world.graded_answer``), reasoning padded in a third of them."""
    rng = random.Random(f"grade-{seed}")
    out = []
    while len(out) < n:
        question, ref, steps = _verifiable_item(rng, p, seed + len(out))
        answer, grade, kind, rationale = graded_answer(rng, ref)
        if rng.random() < 1 / 3:
            steps, kind = _padded_steps(rng, steps, rng.randint(1, 2 * p.max_pad)), kind + ", padded"
        out.append(Example("grade", kind, question, _response(steps, answer), ref, grade, rationale))
    return out


def _world_answer(rng: random.Random, topic: str, constraints) -> str:
    text = reply(rng, topic, rng.randint(0, MAX_FACTS), off_topic=int(rng.random() < 0.25),
                 filler=rng.randint(0, 1), repeats=int(rng.random() < 0.2))
    for kind, arg in constraints:
        if rng.random() < 0.5:
            text = satisfy(kind, arg, text, rng, topic)
    return text


def _world_prompt(rng: random.Random, seed: int) -> tuple[str, str, list]:
    """(question, topic, constraints) of an open prompt or an instruct prompt."""
    if rng.random() < 0.5:
        it = OpenPromptTask().make_item(rng, str(seed), 1)
        return it["question"], it["metadata"]["topic"], []
    it = InstructTask().make_item(rng, str(seed), rng.randint(1, len(CONSTRAINTS)))
    return it["question"], it["metadata"]["topic"], [tuple(c) for c in it["metadata"]["constraints"]]


def _pair(kind: str, question: str, topic: str, first: str, second: str) -> Example:
    """A labelled pair: label and rationale from the annotator's quality of each answer."""
    qa, qb = quality(topic, first), quality(topic, second)
    return Example("pair", kind, question, first, second, (qa > qb) - (qa < qb), f"A {qa}, B {qb}")


def length_pair(rng: random.Random, p: JudgeDataParams, seed: int) -> Example:
    """Two answers of equal quality and different length (label 0); the longer one is ``second``."""
    question, topic, cons = _world_prompt(rng, seed)
    short = _world_answer(rng, topic, cons)
    longer = pad(rng, topic, short, rng.randint(1, p.max_pad))
    if short == short.upper():
        longer = longer.upper()
    return _pair("length: " + ("instruct" if cons else "open"), question, topic, short, longer)


def adversarial_pair(rng: random.Random, p: JudgeDataParams, seed: int) -> Example:
    """A better answer against a longer, worse one (padded with filler or repeats)."""
    question, topic, _ = _world_prompt(rng, seed)
    better = reply(rng, topic, rng.randint(1, MAX_FACTS))
    worse = pad(rng, topic, reply(rng, topic, rng.randint(0, quality(topic, better) - 1)), rng.randint(2, 2 * p.max_pad))
    while len(worse) <= len(better):
        worse = pad(rng, topic, worse, 1)
    return _pair("adversarial", question, topic, better, worse)


def pair_examples(p: JudgeDataParams, n: int, seed: int) -> list[Example]:
    """``n // 2`` labelled pairs of answers to open and instruct prompts, each in both positions:
    ``length_share`` equal in quality and different in length, ``adversarial_share`` longer but
    worse, the rest two answers of random quality."""
    rng = random.Random(f"pair-{seed}")
    out: list[Example] = []
    while len(out) < n:
        r, s = rng.random(), seed + len(out)
        if r < p.length_share:
            ex = length_pair(rng, p, s)
        elif r < p.length_share + p.adversarial_share:
            ex = adversarial_pair(rng, p, s)
        else:
            question, topic, cons = _world_prompt(rng, s)
            ex = _pair("instruct" if cons else "open", question, topic, _world_answer(rng, topic, cons),
                       _world_answer(rng, topic, cons))
        if rng.random() < 0.5:
            ex = ex.swapped()
        out += [ex, ex.swapped()]
    return out[:n]


def build_examples(p: JudgeDataParams, seed: int, split: str) -> dict[str, list[Example]]:
    """The labelled sets of a split: ``train`` (grade + pair examples, shuffled) or ``eval``
    (``grade``, ``pairs``: one position each, and ``length``: equal-quality pairs, shorter first)."""
    if split == "train":
        examples = grade_examples(p, p.grade_examples, seed) + pair_examples(p, p.pair_examples, seed)
        random.Random(seed).shuffle(examples)
        return {"train": examples}
    base = EVAL_SEED + seed
    rng = random.Random(f"length-{base}")
    return {"grade": grade_examples(p, p.eval_grade, base),
            "pairs": pair_examples(p, 2 * p.eval_pairs, base)[::2],
            "length": [length_pair(rng, p, base + i) for i in range(p.eval_length_pairs)]}


def recalibration_examples(p: JudgeDataParams, n: int, seed: int) -> list[Example]:
    """Length-balanced pairs for a recalibration (report 4.2.2): equal-quality pairs of different
    length and longer-but-worse pairs, half and half, each in both positions."""
    rng = random.Random(f"recal-{seed}")
    out: list[Example] = []
    while len(out) < n:
        ex = length_pair(rng, p, seed + len(out)) if rng.random() < 0.5 else adversarial_pair(rng, p, seed + len(out))
        out += [ex, ex.swapped()]
    return out[:n]


def write_sft_jsonl(examples: list[Example], path: str | Path) -> Path:
    """``{"question": judging prompt, "response": verdict reply}`` rows: what ``tasks.train.sft`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"question": e.prompt, "response": verdict_reply(e.label, e.rationale)}) + "\n"
                            for e in examples))
    return path


def write_examples(examples: list[Example], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(asdict(e)) + "\n" for e in examples))
    return path

