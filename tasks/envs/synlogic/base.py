"""Common machinery of the SynLogic task families (report section 4.1, "Logical Reasoning").

Every family is a ``SynLogicTask``: ``make(rng, difficulty)`` builds one item from a private
``random.Random`` (the solution first, so every item is solvable), and ``check(item, answer)``
scores the text of the response's final ``<answer>`` tag by rule. ``generate`` and ``verify``
(the ``tasks.envs.base.Task`` protocol) are written once here. Items carry everything the verifier
needs in ``metadata`` as plain JSON (lists, not tuples), so they survive a round trip to disk.

The parsing helpers below are the answer canonicalisation every family shares: a grid is rows on
lines (or any separator) of cells, coordinates are ``(row, col)`` counted from 1, free text is
compared lower-cased with collapsed whitespace.
"""

from __future__ import annotations

import random
import re
from typing import Any, Callable

from tasks.envs.base import Item, extract_answer

ANSWER_TAGS = "Think step by step, then put only the final answer inside <answer></answer> tags."


class SynLogicTask:
    """Base of every family: deterministic generation and rule-based verification.

    Subclasses set ``name``, ``difficulty_range`` and ``knobs`` (a one-line description of what the
    difficulty level changes, shown in docs/TASKS.md), and implement ``make`` and, unless the
    reference answer is unique and compared as canonical text, ``check`` (then ``any_valid``).
    """

    name: str = ""
    difficulty_range: tuple[int, int] = (1, 5)
    knobs: str = ""
    #: True where ``check`` tests the rules and clues, so any valid solution scores 1.0
    any_valid: bool = False

    def make(self, rng: random.Random, difficulty: int) -> tuple[str, str, dict[str, Any]]:
        """One item as ``(question, reference answer, metadata)``."""
        raise NotImplementedError

    def check(self, item: Item, answer: str) -> float:
        """Reward of an extracted answer; by default canonical text equality with the reference."""
        return float(canon(answer) == canon(item["answer"]))

    def generate(self, n: int, seed: int, difficulty: int) -> list[Item]:
        lo, hi = self.difficulty_range
        if not lo <= difficulty <= hi:
            raise ValueError(f"{self.name}: difficulty {difficulty} outside [{lo}, {hi}]")
        items = []
        for i in range(n):
            # one stream per item: a string seed hashes with SHA-512, so it is stable across runs
            rng = random.Random(f"{self.name}|{seed}|{difficulty}|{i}")
            question, answer, meta = self.make(rng, difficulty)
            items.append({"id": f"{self.name}-d{difficulty}-s{seed}-{i}", "question": question,
                          "answer": answer, "difficulty": difficulty, "metadata": meta})
        return items

    def verify(self, item: Item, response: str) -> float:
        answer = extract_answer(response)
        if answer is None or not answer:
            return 0.0
        try:
            reward = self.check(item, answer)
        except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError, OverflowError,
                RecursionError):
            # a malformed answer the parser could not make sense of earns nothing
            return 0.0
        return min(1.0, max(0.0, float(reward)))


def canon(text: str) -> str:
    """Lower case, whitespace collapsed, surrounding quotes and a final full stop removed."""
    text = " ".join(text.strip().lower().split())
    return text.strip("\"'`").rstrip(".").strip()


def level(difficulty: int, table: list) -> Any:
    """The knob value of a difficulty level from a table indexed from level 1."""
    return table[min(difficulty, len(table)) - 1]


_INT_RE = re.compile(r"-?\d+")
_COORD_RE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def parse_ints(text: str) -> list[int]:
    """Every integer in the text, in order."""
    return [int(tok) for tok in _INT_RE.findall(text)]


def parse_int_grid(text: str, rows: int, cols: int) -> list[list[int]]:
    """A rows x cols grid of integers; any separators, as long as exactly rows*cols numbers appear."""
    values = parse_ints(text)
    if len(values) != rows * cols:
        raise ValueError(f"expected {rows * cols} numbers, got {len(values)}")
    return [values[r * cols:(r + 1) * cols] for r in range(rows)]


def parse_char_grid(text: str, rows: int, cols: int, alphabet: str) -> list[str]:
    """A rows x cols grid of single characters from ``alphabet``; spaces and separators ignored."""
    lines = [re.sub(r"[\s,|]", "", line) for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) != rows or any(len(line) != cols for line in lines):
        raise ValueError(f"expected {rows} rows of {cols} cells")
    if any(ch not in alphabet for line in lines for ch in line):
        raise ValueError(f"cells must be among {alphabet!r}")
    return lines


def parse_coords(text: str) -> list[tuple[int, int]]:
    """Every ``(row, col)`` pair in the text, 1-based as written."""
    return [(int(r), int(c)) for r, c in _COORD_RE.findall(text)]


def format_grid(grid: list[list[Any]]) -> str:
    """Rows on lines, cells separated by single spaces."""
    return "\n".join(" ".join(str(v) for v in row) for row in grid)


def neighbours4(r: int, c: int, n_rows: int, n_cols: int):
    """Orthogonal neighbours inside the grid."""
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        if 0 <= r + dr < n_rows and 0 <= c + dc < n_cols:
            yield r + dr, c + dc


def neighbours8(r: int, c: int, n_rows: int, n_cols: int):
    """King-move neighbours inside the grid."""
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if (dr or dc) and 0 <= r + dr < n_rows and 0 <= c + dc < n_cols:
                yield r + dr, c + dc


def random_latin_square(rng: random.Random, n: int) -> list[list[int]]:
    """A Latin square on 1..n: a cyclic one with rows, columns and symbols shuffled."""
    base = [[(r + c) % n + 1 for c in range(n)] for r in range(n)]
    rows, cols, syms = list(range(n)), list(range(n)), list(range(1, n + 1))
    rng.shuffle(rows)
    rng.shuffle(cols)
    rng.shuffle(syms)
    return [[syms[base[r][c] - 1] for c in cols] for r in rows]


def is_latin(grid: list[list[int]], n: int) -> bool:
    """Every row and column a permutation of 1..n."""
    want = set(range(1, n + 1))
    return (len(grid) == n and all(len(row) == n and set(row) == want for row in grid)
            and all({grid[r][c] for r in range(n)} == want for c in range(n)))


def random_regions(rng: random.Random, seeds: list[list[tuple[int, int]]], n_rows: int,
                   n_cols: int) -> list[list[int]]:
    """Partition the grid into connected regions grown at random from the given seed cells.

    ``seeds[k]`` are the cells region k starts with (they must be connected); the result maps each
    cell to its region number.
    """
    region = [[-1] * n_cols for _ in range(n_rows)]
    frontier = []
    for k, cells in enumerate(seeds):
        for r, c in cells:
            region[r][c] = k
            frontier.append((r, c))
    while frontier:
        r, c = frontier.pop(rng.randrange(len(frontier)))
        free = [(rr, cc) for rr, cc in neighbours4(r, c, n_rows, n_cols) if region[rr][cc] < 0]
        if free:
            rr, cc = rng.choice(free)
            region[rr][cc] = region[r][c]
            frontier += [(r, c), (rr, cc)]
    if any(v < 0 for row in region for v in row):
        raise ValueError("seed cells do not reach the whole grid")
    return region


Cell = tuple[int, int]
#: ``(cells, ok)``: ``ok`` gets the cells' values (0 = still open) and must say False only when they
#: cannot be completed, and exactly whether the constraint holds once all are filled
Constraint = tuple[list[Cell], Callable[[list[int]], bool]]


def grid_solutions(cells: list[Cell], values: list[int], givens: dict[Cell, int],
                   constraints: list[Constraint], limit: int = 2,
                   budget: int = 2000) -> list[dict[Cell, int]] | None:
    """Up to ``limit`` assignments of ``values`` (positive ints) to ``cells`` that extend
    ``givens`` and satisfy every constraint; None when the search visits more than ``budget``
    nodes first. Depth first, always on the open cell with the fewest values its constraints allow.
    """
    value_of = {cell: 0 for cell in cells}
    value_of.update(givens)
    touching: dict[Cell, list[Constraint]] = {}
    for con in constraints:
        for cell in con[0]:
            touching.setdefault(cell, []).append(con)

    def allowed(cell):
        out = []
        for v in values:
            value_of[cell] = v
            if all(ok([value_of[c] for c in cs]) for cs, ok in touching.get(cell, ())):
                out.append(v)
        value_of[cell] = 0
        return out

    if not all(ok([value_of[c] for c in cs]) for cs, ok in constraints):
        return []
    found: list[dict[Cell, int]] = []
    nodes = 0

    def search(open_cells):
        nonlocal nodes
        nodes += 1
        if not open_cells:
            found.append(dict(value_of))
            return
        best, best_vals = 0, None
        for i, cell in enumerate(open_cells):
            vals = allowed(cell)
            if best_vals is None or len(vals) < len(best_vals):
                best, best_vals = i, vals
                if len(vals) <= 1:
                    break
        cell = open_cells[best]
        rest = open_cells[:best] + open_cells[best + 1:]
        for v in best_vals:
            if len(found) >= limit or nodes > budget:
                break
            value_of[cell] = v
            search(rest)
        value_of[cell] = 0

    search([cell for cell in cells if cell not in givens])
    return None if nodes > budget else found


def reveal_until_unique(rng: random.Random, solution: dict[Cell, int], shown: set[Cell],
                        solve: Callable[[dict[Cell, int]], list[dict[Cell, int]] | None]) -> set[Cell]:
    """Reveal cells of ``solution`` until ``solve(givens)`` finds it alone.

    While a second solution exists, one cell where it differs from ``solution`` is revealed,
    which rules it out; when the search runs past its budget a random cell is revealed instead.
    """
    shown = set(shown)
    while len(shown) < len(solution):
        sols = solve({cell: solution[cell] for cell in shown})
        if sols is not None and len(sols) == 1:
            break
        other = next((s for s in sols or [] if s != solution), None)
        pool = sorted(cell for cell in solution if cell not in shown
                      and (other is None or other[cell] != solution[cell]))
        shown.add(rng.choice(pool))
    return shown
