"""Procedural math problems with exact reference answers, checked by math-verify (report section 4.1).

The report's math RL data is curated competition problems whose answers a rule-based checker parses;
no package ships such a set offline, so this task generates problems of that kind with the answer
computed exactly (``fractions.Fraction`` / sympy) and written as LaTeX, and verifies the response's
final ``<answer>`` with ``tasks.envs.mathverify.verify_math`` (so ``0.5``, ``1/2`` and ``\\frac{1}{2}`` all
score). Families, unlocked as difficulty rises:

- ``linear``: solve ``a x + b = c x + d`` (integer root; a fraction from difficulty 3);
- ``word``: a shopping / travel word problem of ``difficulty + 1`` arithmetic steps;
- ``fraction``: a sum or product of ``difficulty + 1`` fractions, in lowest terms;
- ``percent``: percentage change chains (difficulty >= 2);
- ``system``: one unknown of a 2x2 linear system (difficulty >= 3);
- ``quadratic``: the larger root of a quadratic, irrational from difficulty 5 (difficulty >= 4).

Usage::

    import tasks.envs.math_tasks  # registers "math"
    from tasks.envs.base import TASKS
    items = TASKS["math"].generate(4, seed=0, difficulty=2)
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from tasks.config import Params, param
from tasks.envs.base import Item, extract_answer, register


@dataclass
class MathParams(Params):
    """``envs.math``: checking a math answer."""

    SECTION: ClassVar[str] = "envs.math"
    timeout_s: float = param(5.0, gt=0.0, help="per math-verify comparison; the worker process is killed past it")

INSTRUCTION = "Think step by step, then put only the final answer inside <answer></answer> tags."

_NAMES = ["Ada", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun"]
_GOODS = [("pencil", "pencils"), ("notebook", "notebooks"), ("apple", "apples"), ("ticket", "tickets"),
          ("stamp", "stamps"), ("marble", "marbles")]


def latex(q: Fraction) -> str:
    """An exact rational as LaTeX: ``7``, ``-\\frac{3}{4}``."""
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def _side(terms: list[tuple[int, str]], const: int | None = None) -> str:
    """``[(3, "x"), (-1, "y")], 4`` -> ``3x - y + 4``: unit coefficients and zero terms written as usual."""
    parts = []
    for coef, var in terms:
        if coef:
            mag = var if abs(coef) == 1 else f"{abs(coef)}{var}"
            parts.append(("- " if coef < 0 else "+ ") + mag)
    if const or not parts:
        parts.append(("- " if const < 0 else "+ ") + str(abs(const or 0)))
    text = " ".join(parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def plain(q: Fraction) -> str:
    """An exact rational as the worked solutions write it: ``7``, ``-3/4``."""
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _nonzero(rng: random.Random, hi: int) -> int:
    return rng.choice([k for k in range(-hi, hi + 1) if k != 0])


def _linear(rng: random.Random, d: int) -> tuple[str, str, str]:
    hi = 5 * d
    x = Fraction(rng.randint(-hi, hi), rng.randint(2, 3 + d) if d >= 3 else 1)
    a, c = _nonzero(rng, hi), _nonzero(rng, hi)
    while c == a:
        c = _nonzero(rng, hi)
    b = rng.randint(-hi, hi)
    d_ = (a - c) * x + b  # a x + b = c x + d_ holds at x
    if d_.denominator != 1:  # keep the printed coefficients integers: scale everything
        k = d_.denominator
        a, b, c, d_ = a * k, b * k, c * k, d_ * k
    return (f"Solve for $x$: ${_side([(a, 'x')], b)} = {_side([(c, 'x')], int(d_))}$.", latex(x),
            f"{a - c}x={plain(d_ - b)}, x={plain(x)}")


def _word(rng: random.Random, d: int) -> tuple[str, str, str]:
    name = rng.choice(_NAMES)
    one, many = rng.choice(_GOODS)
    price = rng.randint(2, 5 * d + 5)
    count = rng.randint(3, 4 * d + 6)
    total = Fraction(price * count)
    text = [f"{name} buys {count} {many} at {price} dollars per {one}."]
    steps = [f"{count}*{price}={total}"]
    for _ in range(d):
        kind = rng.choice(["more", "refund", "share", "coupon"])
        back, off = rng.randint(1, count), rng.randint(1, 9)
        if (kind == "refund" and total <= back * price) or (kind == "coupon" and total <= off):
            kind = "more"  # the amount paid stays positive
        if kind == "more":
            extra = rng.randint(1, 5 * d)
            steps.append(f"{plain(total)}+{extra}*{price}={plain(total + extra * price)}")
            total += extra * price
            text.append(f"Then {name} buys {extra} more {many} at the same price.")
        elif kind == "refund":
            steps.append(f"{plain(total)}-{back}*{price}={plain(total - back * price)}")
            total -= back * price
            text.append(f"Later {name} returns {back} {many} for a full refund.")
        elif kind == "share":
            friends = rng.randint(2, 4)
            steps.append(f"{plain(total)}/{friends}={plain(total / friends)}")
            total /= friends
            text.append(f"{name} then splits the amount spent so far equally with {friends - 1} "
                        f"friend{'s' if friends > 2 else ''} and pays only one share.")
        else:
            steps.append(f"{plain(total)}-{off}={plain(total - off)}")
            total -= off
            text.append(f"A coupon takes {off} dollars off what {name} pays.")
    text.append(f"How many dollars does {name} pay in the end?")
    return " ".join(text), latex(total), ", ".join(steps)


def _fraction(rng: random.Random, d: int) -> tuple[str, str, str]:
    terms = [Fraction(_nonzero(rng, 3 + 2 * d), rng.randint(2, 4 + 3 * d)) for _ in range(d + 1)]
    add = rng.random() < 0.5
    value, op, steps = terms[0], " + " if add else " \\cdot ", []
    for t in terms[1:]:
        new = value + t if add else value * t
        steps.append(f"{plain(value)}{'+' if add else '*'}({plain(t)})={plain(new)}")
        value = new
    expr = op.join(f"\\left({latex(t)}\\right)" if t < 0 else latex(t) for t in terms)
    return f"Compute ${expr}$ and give the result as a fraction in lowest terms.", latex(value), ", ".join(steps)


def _percent(rng: random.Random, d: int) -> tuple[str, str, str]:
    start = rng.randint(2, 20) * 10 * d
    value = Fraction(start)
    steps, work = [], []
    for _ in range(d):
        p = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50])
        up = rng.random() < 0.5
        new = value * Fraction(100 + p if up else 100 - p, 100)
        work.append(f"{plain(value)}*{100 + p if up else 100 - p}/100={plain(new)}")
        value = new
        steps.append(f"{'rises' if up else 'falls'} by {p}%")
    return (f"A price starts at {start} dollars, then {', then '.join(steps)}. "
            "What is the final price in dollars?", latex(value), ", ".join(work))


def _system(rng: random.Random, d: int) -> tuple[str, str, str]:
    hi = 3 * d
    x, y = rng.randint(-hi, hi), rng.randint(-hi, hi)
    while True:
        a, b, c, e = (_nonzero(rng, hi) for _ in range(4))
        if a * e - b * c != 0:
            break
    ask = rng.choice(["x", "y"])
    eq1 = f"{_side([(a, 'x'), (b, 'y')])} = {a * x + b * y}"
    eq2 = f"{_side([(c, 'x'), (e, 'y')])} = {c * x + e * y}"
    det = a * e - b * c  # Cramer's rule
    work = f"det={det}, x={(a * x + b * y) * e - b * (c * x + e * y)}/{det}={x}, y={a * (c * x + e * y) - c * (a * x + b * y)}/{det}={y}"
    return f"Given ${eq1}$ and ${eq2}$, find ${ask}$.", str(x if ask == "x" else y), work


def _quadratic(rng: random.Random, d: int) -> tuple[str, str, str]:
    if d >= 5 and rng.random() < 0.6:
        # x^2 - 2 p x + (p^2 - s) = 0 has roots p +- sqrt(s); s not a square
        p = rng.randint(-6, 6)
        s = rng.choice([2, 3, 5, 6, 7, 10, 11])
        b, c = -2 * p, p * p - s
        answer = f"{p} + \\sqrt{{{s}}}" if p else f"\\sqrt{{{s}}}"
        work = f"x={p}+-sqrt({s})"
    else:
        r1, r2 = rng.randint(-4 * d, 4 * d), rng.randint(-4 * d, 4 * d)
        b, c = -(r1 + r2), r1 * r2
        answer = str(max(r1, r2))
        work = f"(x-({r1}))(x-({r2}))=0, x={r1} or x={r2}"
    poly = f"{_side([(1, 'x^2'), (b, 'x')], c)} = 0"
    return f"What is the larger root of ${poly}$?", answer, work


_FAMILIES = {  # name: (generator, lowest difficulty that uses it)
    "linear": (_linear, 1), "word": (_word, 1), "fraction": (_fraction, 1),
    "percent": (_percent, 2), "system": (_system, 3), "quadratic": (_quadratic, 4),
}


class MathTask:
    """Generated math problems; reward 1.0 when math-verify finds the final answer equal to the reference."""

    name = "math"
    difficulty_range = (1, 5)
    knobs = ("families unlocked (percent >= 2, 2x2 system >= 3, quadratic >= 4, irrational roots at 5); "
             "number sizes, word-problem steps and fraction terms grow with difficulty")

    def __init__(self, params: MathParams | None = None) -> None:
        self.params = params or MathParams()

    def configure(self, envs) -> MathTask:
        """This task with the settings of ``envs`` (``tasks.envs.params.EnvParams``)."""
        return MathTask(envs.math)

    def generate(self, n: int, seed: int, difficulty: int) -> list[Item]:
        lo, hi = self.difficulty_range
        if not lo <= difficulty <= hi:
            raise ValueError(f"{self.name}: difficulty {difficulty} outside [{lo}, {hi}]")
        families = [f for f, (_, start) in _FAMILIES.items() if start <= difficulty]
        items = []
        for i in range(n):
            rng = random.Random(f"{self.name}|{seed}|{difficulty}|{i}")
            family = rng.choice(families)
            question, answer, work = _FAMILIES[family][0](rng, difficulty)
            # worked solution: the family's steps in plain arithmetic, then the exact answer
            meta: dict[str, Any] = {"family": family, "solution": f"<think>{work}</think><answer>{answer}</answer>"}
            items.append({"id": f"{self.name}-d{difficulty}-s{seed}-{i}",
                          "question": f"{question}\n{INSTRUCTION}", "answer": answer,
                          "difficulty": difficulty, "metadata": meta})
        return items

    def verify(self, item: Item, response: str) -> float:
        from tasks.envs.mathverify import verify_math

        pred = extract_answer(response)
        if not pred:
            return 0.0
        return 1.0 if verify_math(item["answer"], pred, timeout_s=self.params.timeout_s) else 0.0


register(MathTask())
