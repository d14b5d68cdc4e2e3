"""Number games: Game of 24, Cryptarithm, Magic square, Number sequence, Base conversion,
Calendar arithmetic.

Game of 24 answers are arithmetic expressions: they are parsed with ``ast`` and only integer
literals and + - * / are evaluated (exactly, with fractions), so no answer text is ever executed.
"""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import re
from fractions import Fraction

from tasks.envs.base import register
from tasks.envs.synlogic.base import (ANSWER_TAGS, SynLogicTask, canon, format_grid, level,
                                 parse_int_grid, parse_ints)

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def evaluate_expression(text: str) -> tuple[Fraction, list[int]]:
    """Exact value of an arithmetic expression and the integer literals it uses.

    Accepts integers, + - * / (also written x, ×, ÷) and parentheses; anything else is a
    ValueError. Division by zero raises ZeroDivisionError.
    """
    text = text.replace("×", "*").replace("x", "*").replace("X", "*").replace("÷", "/")
    if len(text) > 200:
        raise ValueError("expression too long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an expression: {err}") from None
    used: list[int] = []

    def walk(node):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"disallowed syntax: {type(node).__name__}")

    return walk(tree.body), used


def _solve(values: list[tuple[Fraction, str]], target: Fraction) -> str | None:
    """An expression over all values that equals target, by exhaustive pairwise combination."""
    if len(values) == 1:
        return values[0][1] if values[0][0] == target else None
    for i, j in itertools.permutations(range(len(values)), 2):
        (a, ea), (b, eb) = values[i], values[j]
        rest = [values[k] for k in range(len(values)) if k not in (i, j)]
        options = [(a + b, f"({ea} + {eb})"), (a - b, f"({ea} - {eb})"), (a * b, f"({ea} * {eb})")]
        if b != 0:
            options.append((a / b, f"({ea} / {eb})"))
        for value, expr in options:
            found = _solve(rest + [(value, expr)], target)
            if found:
                return found
    return None


class GameOf24(SynLogicTask):
    name = "game_of_24"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "numbers 4-6, largest number 9-25; target 24 up to level 2, then a built target up to 1000"
    _levels = [(4, 9, 24), (4, 13, 24), (5, 13, 100), (5, 25, 500), (6, 25, 1000)]

    def make(self, rng, difficulty):
        count, top, most = level(difficulty, self._levels)
        while True:
            numbers = [rng.randint(1, top) for _ in range(count)]
            if most == 24:
                target = 24
                expr = _solve([(Fraction(v), str(v)) for v in numbers], Fraction(24))
            else:
                expr = self._build(rng, [str(v) for v in numbers])
                try:
                    value, _ = evaluate_expression(expr)
                except ZeroDivisionError:
                    continue
                target = int(value) if value.denominator == 1 else 0
            if expr and 1 <= target <= most:
                break
        question = (f"Use each of the numbers {', '.join(map(str, numbers))} exactly once, with "
                    f"+, -, * and / and parentheses, to make {target}.\n"
                    f"Answer with the expression only (no '= {target}'). {ANSWER_TAGS}")
        return question, expr, {"numbers": numbers, "target": target}

    @staticmethod
    def _build(rng, parts):
        while len(parts) > 1:
            a, b = parts.pop(rng.randrange(len(parts))), parts.pop(rng.randrange(len(parts)))
            parts.append(f"({a} {rng.choice('+-**/')} {b})")
        return parts[0][1:-1] if parts[0].startswith("(") else parts[0]

    def check(self, item, answer):
        meta = item["metadata"]
        text = answer.split("=")[0]
        value, used = evaluate_expression(text)
        return float(value == meta["target"] and sorted(used) == sorted(meta["numbers"]))


class Cryptarithm(SynLogicTask):
    name = "cryptarithm"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "addends 2-3 of 2-4 digits"
    _levels = [(2, 2), (2, 3), (2, 4), (3, 3), (3, 4)]

    def make(self, rng, difficulty):
        n_terms, digits = level(difficulty, self._levels)
        terms = [rng.randint(10 ** (digits - 1), 10 ** digits - 1) for _ in range(n_terms)]
        total = sum(terms)
        letters = rng.sample("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
        word = lambda v: "".join(letters[int(d)] for d in str(v))  # noqa: E731
        words = [word(t) for t in terms] + [word(total)]
        puzzle = f"{' + '.join(words[:-1])} = {words[-1]}"
        used = sorted(set("".join(words)))
        question = (f"Solve the cryptarithm {puzzle}: each letter stands for a different digit, "
                    f"and no number starts with 0.\n"
                    f"Answer with every letter's digit as 'A=1, B=2, ...'. {ANSWER_TAGS}")
        answer = ", ".join(f"{ch}={letters.index(ch)}" for ch in used)
        return question, answer, {"words": words}

    def check(self, item, answer):
        words = item["metadata"]["words"]
        digit = {k: int(v) for k, v in re.findall(r"([A-Z])\s*=\s*(\d)\b", answer.upper())}
        letters = set("".join(words))
        if set(digit) != letters or len(set(digit.values())) != len(digit):
            return 0.0
        if any(digit[w[0]] == 0 and len(w) > 1 for w in words):
            return 0.0
        value = lambda w: int("".join(str(digit[ch]) for ch in w))  # noqa: E731
        return float(sum(value(w) for w in words[:-1]) == value(words[-1]))


def _magic(n: int) -> list[list[int]]:
    if n % 2:  # Siamese method
        grid = [[0] * n for _ in range(n)]
        r, c = 0, n // 2
        for k in range(1, n * n + 1):
            grid[r][c] = k
            if grid[(r - 1) % n][(c + 1) % n]:
                r = (r + 1) % n
            else:
                r, c = (r - 1) % n, (c + 1) % n
        return grid
    # doubly even: count up, complement the cells on the 4x4 diagonals
    return [[n * n - (n * r + c) if (r % 4 == c % 4 or r % 4 + c % 4 == 3) else n * r + c + 1
             for c in range(n)] for r in range(n)]


class MagicSquare(SynLogicTask):
    name = "magic_square"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "size 3 / 4 / 5 and hidden cells 4-14"
    _levels = [(3, 4), (3, 6), (4, 7), (4, 10), (5, 14)]

    def make(self, rng, difficulty):
        n, n_hidden = level(difficulty, self._levels)
        grid = _magic(n)
        for _ in range(rng.randrange(4)):
            grid = [list(row) for row in zip(*grid[::-1])]  # rotate
        if rng.random() < 0.5:
            grid = [row[::-1] for row in grid]
        if rng.random() < 0.5:
            grid = [[n * n + 1 - v for v in row] for row in grid]
        if n > 3 and rng.random() < 0.5:
            # swapping rows i, n-1-i and the same columns keeps every line sum, diagonals included
            i = rng.randrange(n // 2)
            perm = list(range(n))
            perm[i], perm[n - 1 - i] = perm[n - 1 - i], perm[i]
            grid = [[grid[perm[r]][perm[c]] for c in range(n)] for r in range(n)]
        hidden = set(rng.sample([(r, c) for r in range(n) for c in range(n)], n_hidden))
        givens = [[r, c, grid[r][c]] for r in range(n) for c in range(n) if (r, c) not in hidden]
        board = [["." if (r, c) in hidden else grid[r][c] for c in range(n)] for r in range(n)]
        question = (f"Complete the {n}x{n} magic square: use each number 1-{n * n} once so that "
                    f"every row, column and both diagonals add up to {n * (n * n + 1) // 2}.\n"
                    f"{format_grid(board)}\nAnswer with the full grid, one row per line, numbers "
                    f"separated by spaces. {ANSWER_TAGS}")
        return question, format_grid(grid), {"n": n, "givens": givens}

    def check(self, item, answer):
        meta = item["metadata"]
        n = meta["n"]
        grid = parse_int_grid(answer, n, n)
        total = n * (n * n + 1) // 2
        lines = grid + [[grid[r][c] for r in range(n)] for c in range(n)]
        lines += [[grid[i][i] for i in range(n)], [grid[i][n - 1 - i] for i in range(n)]]
        return float(sorted(v for row in grid for v in row) == list(range(1, n * n + 1))
                     and all(sum(line) == total for line in lines)
                     and all(grid[r][c] == v for r, c, v in meta["givens"]))


class NumberSequence(SynLogicTask):
    name = "number_sequence"
    difficulty_range = (1, 5)
    knobs = "rule families (arithmetic, geometric, quadratic, Fibonacci-like, interleaved, affine)"
    _levels = [["arith", "geom"], ["arith", "geom", "quad"], ["quad", "fib", "geom"],
               ["fib", "interleave", "affine"], ["interleave", "affine", "quad"]]
    _text = {"arith": "arithmetic", "geom": "geometric", "quad": "quadratic in the position",
             "fib": "each term the sum of the two before", "interleave": "two interleaved "
             "arithmetic sequences", "affine": "each term a fixed multiple of the previous plus a "
             "fixed number"}

    def make(self, rng, difficulty):
        kind = rng.choice(level(difficulty, self._levels))
        shown = 8 if kind == "interleave" else 6
        terms = self._terms(rng, kind, shown + 1)
        question = (f"The sequence {', '.join(map(str, terms[:-1]))}, ... follows one rule. "
                    f"What is the next term?\nAnswer with a number. {ANSWER_TAGS}")
        return question, str(terms[-1]), {"rule": self._text[kind]}

    @staticmethod
    def _terms(rng, kind, n):
        if kind == "arith":
            a, d = rng.randint(-20, 50), rng.choice([v for v in range(-9, 13) if v])
            return [a + d * i for i in range(n)]
        if kind == "geom":
            a, q = rng.randint(1, 9), rng.choice([2, 3, -2])
            return [a * q ** i for i in range(n)]
        if kind == "quad":
            a, b, c = rng.randint(1, 4), rng.randint(-5, 5), rng.randint(-10, 10)
            return [a * i * i + b * i + c for i in range(1, n + 1)]
        if kind == "fib":
            out = [rng.randint(1, 9), rng.randint(1, 9)]
            while len(out) < n:
                out.append(out[-1] + out[-2])
            return out
        if kind == "interleave":
            a, d, b, e = rng.randint(1, 30), rng.randint(1, 7), rng.randint(1, 30), rng.randint(-7, -1)
            return [a + d * (i // 2) if i % 2 == 0 else b + e * (i // 2) for i in range(n)]
        m, k, out = rng.choice([2, 3]), rng.randint(-5, 5), [rng.randint(1, 9)]
        while len(out) < n:
            out.append(m * out[-1] + k)
        return out

    def check(self, item, answer):
        return float(parse_ints(answer) == [int(item["answer"])])


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _to_base(v: int, base: int) -> str:
    out = ""
    while True:
        v, d = divmod(v, base)
        out = _DIGITS[d] + out
        if v == 0:
            return out


class BaseConversion(SynLogicTask):
    name = "base_conversion"
    difficulty_range = (1, 5)
    knobs = "largest value 63 to 10^6; bases 2 and 10 at level 1, up to any of 2-16"
    _levels = [(63, [2, 10]), (255, [2, 8, 10, 16]), (4095, list(range(2, 17))),
               (65535, list(range(2, 17))), (10 ** 6, list(range(2, 17)))]

    def make(self, rng, difficulty):
        top, bases = level(difficulty, self._levels)
        v = rng.randint(2, top)
        src, dst = rng.sample(bases, 2)
        question = (f"Convert the base-{src} number {_to_base(v, src)} to base {dst}. Digits above "
                    f"9 are written a, b, c, ...\nAnswer with the base-{dst} digits only. "
                    f"{ANSWER_TAGS}")
        return question, _to_base(v, dst), {}

    def check(self, item, answer):
        return float(re.sub(r"\s", "", canon(answer)) == item["answer"])


_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class CalendarArithmetic(SynLogicTask):
    name = "calendar_arithmetic"
    difficulty_range = (1, 5)
    knobs = "question kind (weekday, date, day count) and span 30 days to 10 years"
    _levels = [("weekday", 30), ("date", 60), ("date", 400), ("between", 2000), ("weekday", 3650)]

    def make(self, rng, difficulty):
        kind, span = level(difficulty, self._levels)
        day = dt.date(2000, 1, 1) + dt.timedelta(days=rng.randrange(365 * 40))
        k = rng.randint(1, span)
        later = day + dt.timedelta(days=k)
        if kind == "weekday":
            question = (f"{day.isoformat()} is a {_WEEKDAYS[day.weekday()]}. What day of the week "
                        f"is it {k} days later?\nAnswer with the weekday's name.")
            answer = _WEEKDAYS[later.weekday()]
        elif kind == "date":
            question = (f"What is the date {k} days after {day.isoformat()}?\n"
                        f"Answer in the form YYYY-MM-DD.")
            answer = later.isoformat()
        else:
            question = (f"How many days are there from {day.isoformat()} to {later.isoformat()} "
                        f"(counting the end date, not the start)?\nAnswer with a number.")
            answer = str(k)
        return f"{question} {ANSWER_TAGS}", answer, {}


for _task in (GameOf24(), Cryptarithm(), MagicSquare(), NumberSequence(), BaseConversion(),
              CalendarArithmetic()):
    register(_task)
