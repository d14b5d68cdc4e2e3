"""tasks.envs.math_tasks: generated problems, exact answers, math-verify scoring."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

import tasks.envs.math_tasks as mt
from tasks.envs.base import TASKS, Task


def reply(answer: str) -> str:
    return f"<think>working</think><answer>{answer}</answer>"


def test_registered_and_deterministic():
    task = TASKS["math"]
    assert isinstance(task, Task)
    assert task.generate(5, seed=3, difficulty=4) == task.generate(5, seed=3, difficulty=4)
    assert task.generate(5, seed=3, difficulty=4) != task.generate(5, seed=4, difficulty=4)
    with pytest.raises(ValueError, match="outside"):
        task.generate(1, seed=0, difficulty=6)


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_references_verify_and_corruptions_fail(difficulty):
    task = TASKS["math"]
    for item in task.generate(4, seed=11, difficulty=difficulty):
        assert task.verify(item, reply(item["answer"])) == 1.0, item
        assert task.verify(item, reply(f"{item['answer']} + 1")) == 0.0, item
        assert task.verify(item, "<think>no answer tag</think>") == 0.0


def test_equivalent_forms_score():
    item = {"answer": "-\\frac{3}{2}"}
    task = TASKS["math"]
    for form in ["-3/2", "-1.5", "\\boxed{-\\frac{3}{2}}", "$-\\dfrac{3}{2}$"]:
        assert task.verify(item, reply(form)) == 1.0, form
    assert task.verify(item, reply("3/2")) == 0.0


def test_families_by_difficulty():
    seen = {d: {it["metadata"]["family"] for it in TASKS["math"].generate(60, seed=0, difficulty=d)}
            for d in (1, 4)}
    assert seen[1] == {"linear", "word", "fraction"}
    assert seen[4] == {"linear", "word", "fraction", "percent", "system", "quadratic"}


def test_latex_and_equation_sides():
    assert mt.latex(Fraction(7)) == "7"
    assert mt.latex(Fraction(-3, 4)) == "-\\frac{3}{4}"
    assert mt._side([(3, "x"), (-1, "y")], 4) == "3x - y + 4"
    assert mt._side([(-1, "x")], 0) == "-x"
    assert mt._side([(1, "x^2"), (0, "x")], -6) == "x^2 - 6"


@pytest.mark.parametrize("seed", range(6))
def test_linear_answer_solves_its_equation(seed):
    # read "Solve for $x$: $a x + b = c x + d$" back and solve it independently with sympy
    import re

    import sympy

    question, answer, _ = mt._linear(random.Random(seed), 3)
    lhs, rhs = (re.sub(r"(\d)x", r"\1*x", side) for side in question.split("$")[3].split("="))
    sol = sympy.solve(sympy.sympify(lhs) - sympy.sympify(rhs), sympy.Symbol("x"))
    assert len(sol) == 1 and mt.latex(Fraction(str(sol[0]))) == answer
