"""Latin-square puzzles: Sudoku, Futoshiki, Skyscraper, Calcudoku, Binairo.

Each generator draws a complete solution first and reveals clues about it, so every puzzle is
solvable, then reveals cells until a solver finds that solution alone (``latin_solutions``, a
depth-first search with forward checking and a node budget; ``count_sudoku_solutions``; Binairo
through ``grid_solutions``). Each verifier checks the grid against the rules and the clues.
"""

from __future__ import annotations

import random
from math import prod
from typing import Callable

from tasks.envs.base import register
from tasks.envs.synlogic.base import (ANSWER_TAGS, Constraint, SynLogicTask, format_grid, grid_solutions,
                                 is_latin, level, parse_int_grid, random_latin_square,
                                 reveal_until_unique)


def _masked(grid: list[list[int]], hidden: set[tuple[int, int]]) -> list[list[str]]:
    return [["." if (r, c) in hidden else str(v) for c, v in enumerate(row)]
            for r, row in enumerate(grid)]


def _givens_kept(grid: list[list[int]], givens: list[list[int]]) -> bool:
    """``givens`` is [row, col, value] triples, 0-based."""
    return all(grid[r][c] == v for r, c, v in givens)


def _hide(rng: random.Random, n_rows: int, n_cols: int, count: int) -> set[tuple[int, int]]:
    cells = [(r, c) for r in range(n_rows) for c in range(n_cols)]
    return set(rng.sample(cells, min(count, len(cells))))


def latin_solutions(n: int, givens: dict[tuple[int, int], int], constraints: list[Constraint],
                    limit: int = 2, budget: int = 2000) -> list[list[list[int]]] | None:
    """Up to ``limit`` Latin squares on 1..n that extend ``givens`` and satisfy ``constraints``;
    None when the search visits more than ``budget`` nodes first.

    A constraint is ``(cells, ok)``: ``ok`` gets the cells' values (0 = still empty) and must say
    False only when they cannot be completed, and exactly whether they hold once all are filled.
    The search fills the blank with the fewest candidates left by its row, column and constraints.
    """
    grid = [[0] * n for _ in range(n)]
    rows, cols = [0] * n, [0] * n
    touching: dict[tuple[int, int], list[Constraint]] = {}
    for cells, ok in constraints:
        for cell in cells:
            touching.setdefault(cell, []).append((cells, ok))
    for (r, c), v in givens.items():
        grid[r][c] = v
        rows[r] |= 1 << (v - 1)
        cols[c] |= 1 << (v - 1)
    if not all(ok([grid[r][c] for r, c in cells]) for cells, ok in constraints):
        return []
    full = (1 << n) - 1
    found: list[list[list[int]]] = []
    nodes = 0

    def search(blanks):
        nonlocal nodes
        nodes += 1
        if not blanks:
            found.append([row[:] for row in grid])
            return
        best, best_mask, best_k = 0, 0, n + 1
        for i, (r, c) in enumerate(blanks):
            mask = full & ~(rows[r] | cols[c])
            for bit in _bits(mask) if (r, c) in touching else ():
                grid[r][c] = bit.bit_length()
                if not all(ok([grid[rr][cc] for rr, cc in cells]) for cells, ok in touching[(r, c)]):
                    mask ^= bit
            grid[r][c] = 0
            if mask.bit_count() < best_k:
                best, best_mask, best_k = i, mask, mask.bit_count()
                if best_k <= 1:
                    break
        r, c = blanks[best]
        rest = blanks[:best] + blanks[best + 1:]
        while best_mask and len(found) < limit and nodes <= budget:
            bit = best_mask & -best_mask
            best_mask ^= bit
            grid[r][c] = bit.bit_length()
            rows[r] |= bit
            cols[c] |= bit
            search(rest)
            rows[r] ^= bit
            cols[c] ^= bit
            grid[r][c] = 0

    search([(r, c) for r in range(n) for c in range(n) if (r, c) not in givens])
    return None if nodes > budget else found


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        out.append(mask & -mask)
        mask ^= out[-1]
    return out


def reveal_latin(rng: random.Random, grid: list[list[int]], shown: set[tuple[int, int]],
                 constraints: list[Constraint]) -> set[tuple[int, int]]:
    """Cells of the Latin square ``grid`` to reveal so that the puzzle's solution is unique."""
    n = len(grid)
    cells = [(r, c) for r in range(n) for c in range(n)]

    def solve(givens):
        sols = latin_solutions(n, givens, constraints)
        return None if sols is None else [{(r, c): s[r][c] for r, c in cells} for s in sols]

    return reveal_until_unique(rng, {(r, c): grid[r][c] for r, c in cells}, shown, solve)


def count_sudoku_solutions(puzzle: list[list[int]], a: int, b: int, limit: int = 2) -> int:
    """Solutions of a Sudoku with a x b boxes (0 = blank), counted up to ``limit``.

    Depth-first search over digit bitmasks, always filling the blank with the fewest candidates.
    """
    n = a * b
    full = (1 << n) - 1
    rows, cols, boxes = [0] * n, [0] * n, [0] * n
    blanks = []
    for r in range(n):
        for c in range(n):
            v = puzzle[r][c]
            if v:
                bit = 1 << (v - 1)
                rows[r] |= bit
                cols[c] |= bit
                boxes[r // a * a + c // b] |= bit  # box index: band * (boxes per band) + stack
            else:
                blanks.append((r, c, r // a * a + c // b))
    found = 0

    def search(remaining):
        nonlocal found
        if not remaining:
            found += 1
            return
        best, best_mask, best_k = 0, 0, n + 1
        for i, (r, c, bx) in enumerate(remaining):
            mask = full & ~(rows[r] | cols[c] | boxes[bx])
            k = mask.bit_count()
            if k < best_k:
                best, best_mask, best_k = i, mask, k
                if k <= 1:
                    break
        if best_k == 0:
            return
        r, c, bx = remaining[best]
        rest = remaining[:best] + remaining[best + 1:]
        while best_mask and found < limit:
            bit = best_mask & -best_mask
            best_mask ^= bit
            rows[r] |= bit
            cols[c] |= bit
            boxes[bx] |= bit
            search(rest)
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[bx] ^= bit

    search(blanks)
    return found


class Sudoku(SynLogicTask):
    name = "sudoku"
    any_valid = True
    difficulty_range = (1, 6)
    knobs = "grid 4x4 / 6x6 / 9x9 and blanks 6, 10, 18, 35, 45, 55 (unique solution kept)"
    _levels = [(2, 2, 6), (2, 2, 10), (2, 3, 18), (3, 3, 35), (3, 3, 45), (3, 3, 55)]

    def make(self, rng, difficulty):
        a, b, blanks = level(difficulty, self._levels)  # boxes of a rows x b columns
        n = a * b
        pattern = [[(b * (r % a) + r // a + c) % n for c in range(n)] for r in range(n)]
        bands = rng.sample(range(b), b)
        rows = [band * a + r for band in bands for r in rng.sample(range(a), a)]
        stacks = rng.sample(range(a), a)
        cols = [stack * b + c for stack in stacks for c in rng.sample(range(b), b)]
        syms = rng.sample(range(1, n + 1), n)
        grid = [[syms[pattern[r][c]] for c in cols] for r in rows]
        hidden = self._dig(rng, grid, a, b, blanks)
        givens = [[r, c, grid[r][c]] for r in range(n) for c in range(n) if (r, c) not in hidden]
        question = (f"Solve this {n}x{n} Sudoku: fill each '.' with a digit 1-{n} so that every row, "
                    f"every column and every {a}x{b} box holds each digit once.\n"
                    f"{format_grid(_masked(grid, hidden))}\n"
                    f"Answer with the full grid, one row per line, digits separated by spaces. "
                    f"{ANSWER_TAGS}")
        return question, format_grid(grid), {"box": [a, b], "givens": givens}

    @staticmethod
    def _dig(rng, grid, a, b, blanks):
        """Blank cells in random order, skipping any whose removal leaves several solutions."""
        n = a * b
        puzzle = [row[:] for row in grid]
        hidden = set()
        for r, c in rng.sample([(r, c) for r in range(n) for c in range(n)], n * n):
            if len(hidden) == blanks:
                break
            puzzle[r][c] = 0
            if count_sudoku_solutions(puzzle, a, b, limit=2) == 1:
                hidden.add((r, c))
            else:
                puzzle[r][c] = grid[r][c]
        return hidden

    def check(self, item, answer):
        a, b = item["metadata"]["box"]
        n = a * b
        grid = parse_int_grid(answer, n, n)
        boxes_ok = all(
            {grid[br + r][bc + c] for r in range(a) for c in range(b)} == set(range(1, n + 1))
            for br in range(0, n, a) for bc in range(0, n, b))
        return float(is_latin(grid, n) and boxes_ok and _givens_kept(grid, item["metadata"]["givens"]))


class Futoshiki(SynLogicTask):
    name = "futoshiki"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 4-7, inequalities 6-24, revealed cells 2-4 (more revealed until unique)"
    _levels = [(4, 6, 4), (5, 10, 4), (5, 14, 2), (6, 18, 3), (7, 24, 3)]

    def make(self, rng, difficulty):
        n, n_ineq, n_givens = level(difficulty, self._levels)
        grid = random_latin_square(rng, n)
        pairs = [((r, c), (r, c + 1)) for r in range(n) for c in range(n - 1)]
        pairs += [((r, c), (r + 1, c)) for r in range(n - 1) for c in range(n)]
        ineqs = []
        for (r1, c1), (r2, c2) in rng.sample(pairs, n_ineq):
            if grid[r1][c1] > grid[r2][c2]:
                (r1, c1), (r2, c2) = (r2, c2), (r1, c1)
            ineqs.append([r1, c1, r2, c2])  # cell 1 < cell 2
        less = lambda v: not v[0] or not v[1] or v[0] < v[1]  # noqa: E731
        constraints = [([(r1, c1), (r2, c2)], less) for r1, c1, r2, c2 in ineqs]
        shown = reveal_latin(rng, grid, _hide(rng, n, n, n_givens), constraints)
        givens = [[r, c, grid[r][c]] for r, c in sorted(shown)]
        hidden = {(r, c) for r in range(n) for c in range(n)} - shown
        lines = "\n".join(f"({r1 + 1},{c1 + 1}) < ({r2 + 1},{c2 + 1})" for r1, c1, r2, c2 in ineqs)
        question = (f"Solve this {n}x{n} Futoshiki: fill the grid with 1-{n} so that each row and "
                    f"column holds each number once and every inequality holds. Cells are "
                    f"(row, column) from 1.\n{format_grid(_masked(grid, hidden))}\n"
                    f"Inequalities:\n{lines}\n"
                    f"Answer with the full grid, one row per line, numbers separated by spaces. "
                    f"{ANSWER_TAGS}")
        return question, format_grid(grid), {"n": n, "givens": givens, "ineqs": ineqs}

    def check(self, item, answer):
        meta = item["metadata"]
        grid = parse_int_grid(answer, meta["n"], meta["n"])
        return float(is_latin(grid, meta["n"]) and _givens_kept(grid, meta["givens"])
                     and all(grid[r1][c1] < grid[r2][c2] for r1, c1, r2, c2 in meta["ineqs"]))


def _visible(line: list[int]) -> int:
    seen, top = 0, 0
    for h in line:
        if h > top:
            seen, top = seen + 1, h
    return seen


def _skyline_clues(grid: list[list[int]]) -> dict[str, list[int]]:
    n = len(grid)
    cols = [[grid[r][c] for r in range(n)] for c in range(n)]
    return {"top": [_visible(col) for col in cols], "bottom": [_visible(col[::-1]) for col in cols],
            "left": [_visible(row) for row in grid], "right": [_visible(row[::-1]) for row in grid]}


def _skyline_constraints(n: int, clues: dict[str, list[int]]) -> list[Constraint]:
    """Each edge clue as a solver constraint over its line, cells ordered from that edge."""
    def visible_ok(k):
        def ok(line):
            seen = top = 0
            for h in line:
                if not h:  # the rest adds at most one visible building per height above top
                    return seen <= k <= seen + n - top
                if h > top:
                    seen, top = seen + 1, h
                if top == n:  # nothing behind the tallest is visible
                    return seen == k
            return seen == k
        return ok

    out = []
    for i in range(n):
        lines = {"top": [(r, i) for r in range(n)], "left": [(i, c) for c in range(n)]}
        lines["bottom"], lines["right"] = lines["top"][::-1], lines["left"][::-1]
        out += [(cells, visible_ok(clues[side][i])) for side, cells in lines.items() if clues[side][i]]
    return out


class Skyscraper(SynLogicTask):
    name = "skyscraper"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 3-6 and the share of edge clues hidden (cells revealed until unique)"
    _levels = [(3, 0.0), (4, 0.0), (4, 0.25), (5, 0.25), (6, 0.3)]

    def make(self, rng, difficulty):
        n, drop = level(difficulty, self._levels)
        grid = random_latin_square(rng, n)
        clues = {side: [v if rng.random() >= drop else 0 for v in vals]
                 for side, vals in _skyline_clues(grid).items()}
        shown = reveal_latin(rng, grid, set(), _skyline_constraints(n, clues))
        givens = [[r, c, grid[r][c]] for r, c in sorted(shown)]
        hidden = {(r, c) for r in range(n) for c in range(n)} - shown
        given_text = (f"Some heights are given ('.' is open):\n{format_grid(_masked(grid, hidden))}\n"
                      if shown else "")
        fmt = lambda vals: " ".join(str(v) if v else "-" for v in vals)  # noqa: E731
        question = (f"Skyscraper puzzle: place buildings of heights 1-{n} in a {n}x{n} grid, each "
                    f"height once per row and column. A clue says how many buildings are visible "
                    f"from that edge (taller ones hide shorter ones behind them); '-' is no clue.\n"
                    f"Top (columns left to right): {fmt(clues['top'])}\n"
                    f"Bottom (columns left to right): {fmt(clues['bottom'])}\n"
                    f"Left (rows top to bottom): {fmt(clues['left'])}\n"
                    f"Right (rows top to bottom): {fmt(clues['right'])}\n{given_text}"
                    f"Answer with the grid of heights, one row per line, separated by spaces. "
                    f"{ANSWER_TAGS}")
        return question, format_grid(grid), {"n": n, "clues": clues, "givens": givens}

    def check(self, item, answer):
        meta = item["metadata"]
        grid = parse_int_grid(answer, meta["n"], meta["n"])
        if not is_latin(grid, meta["n"]):
            return 0.0
        seen = _skyline_clues(grid)
        return float(all(want in (0, got) for side, vals in meta["clues"].items()
                         for want, got in zip(vals, seen[side]))
                     and _givens_kept(grid, meta["givens"]))


def _cage_ok(values: list[int], op: str, target: int) -> bool:
    if op == "=":
        return values == [target]
    if op == "+":
        return sum(values) == target
    if op == "*":
        return prod(values) == target
    hi, lo = max(values), min(values)
    if op == "-":
        return len(values) == 2 and hi - lo == target
    return len(values) == 2 and hi == lo * target  # "/"


def _cage_partial(op: str, target: int) -> Callable[[list[int]], bool]:
    """A cage as a solver constraint: exact once full, a bound on + and * while filling."""
    def ok(values):
        got = [v for v in values if v]
        if len(got) == len(values):
            return _cage_ok(values, op, target)
        if op == "+":
            return sum(got) + len(values) - len(got) <= target  # each open cell adds at least 1
        return op != "*" or target % prod(got) == 0
    return ok


class Calcudoku(SynLogicTask):
    name = "calcudoku"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 3-6 and the largest cage size (cells revealed until unique)"
    _levels = [(3, 2), (4, 2), (4, 3), (5, 3), (6, 4)]

    def make(self, rng, difficulty):
        n, max_cage = level(difficulty, self._levels)
        grid = random_latin_square(rng, n)
        cages = self._cages(rng, n, max_cage)
        spec = []
        for cells in cages:
            vals = [grid[r][c] for r, c in cells]
            if len(vals) == 1:
                op, target = "=", vals[0]
            elif len(vals) == 2 and max(vals) % min(vals) == 0 and rng.random() < 0.5:
                op, target = "/", max(vals) // min(vals)
            elif len(vals) == 2 and rng.random() < 0.5:
                op, target = "-", abs(vals[0] - vals[1])
            elif rng.random() < 0.5:
                op, target = "*", prod(vals)
            else:
                op, target = "+", sum(vals)
            spec.append({"cells": [[r, c] for r, c in cells], "op": op, "target": target})
        constraints = [([tuple(cell) for cell in cage["cells"]], _cage_partial(cage["op"], cage["target"]))
                       for cage in spec]
        shown = reveal_latin(rng, grid, set(), constraints)
        givens = [[r, c, grid[r][c]] for r, c in sorted(shown)]
        hidden = {(r, c) for r in range(n) for c in range(n)} - shown
        given_text = (f"Some numbers are given ('.' is open):\n{format_grid(_masked(grid, hidden))}\n"
                      if shown else "")
        lines = "\n".join(
            f"cells {' '.join(f'({r + 1},{c + 1})' for r, c in cage['cells'])}: "
            + (f"{cage['target']}" if cage["op"] == "=" else f"{cage['target']}{cage['op']}")
            for cage in spec)
        question = (f"Calcudoku: fill a {n}x{n} grid with 1-{n}, each number once per row and column. "
                    f"Each cage's numbers combine with its operation (+, -, *, /; for - and / the "
                    f"larger number comes first) to give its target; a lone number is given as is. "
                    f"Cells are (row, column) from 1.\n{lines}\n{given_text}"
                    f"Answer with the full grid, one row per line, numbers separated by spaces. "
                    f"{ANSWER_TAGS}")
        return question, format_grid(grid), {"n": n, "cages": spec, "givens": givens}

    @staticmethod
    def _cages(rng, n, max_cage):
        free = {(r, c) for r in range(n) for c in range(n)}
        cages = []
        for r in range(n):
            for c in range(n):
                if (r, c) not in free:
                    continue
                cells, size = [(r, c)], rng.randint(1, max_cage)
                free.discard((r, c))
                while len(cells) < size:
                    options = [(rr, cc) for cr, cc0 in cells
                               for rr, cc in ((cr + 1, cc0), (cr, cc0 + 1), (cr, cc0 - 1))
                               if (rr, cc) in free]
                    if not options:
                        break
                    cell = rng.choice(options)
                    free.discard(cell)
                    cells.append(cell)
                cages.append(sorted(cells))
        return cages

    def check(self, item, answer):
        meta = item["metadata"]
        grid = parse_int_grid(answer, meta["n"], meta["n"])
        return float(is_latin(grid, meta["n"]) and _givens_kept(grid, meta["givens"]) and all(
            _cage_ok([grid[r][c] for r, c in cage["cells"]], cage["op"], cage["target"])
            for cage in meta["cages"]))


def _binairo_line_ok(line: list[int], n: int) -> bool:
    return (line.count(0) == line.count(1) == n // 2
            and all(not line[i] == line[i + 1] == line[i + 2] for i in range(n - 2)))


class Binairo(SynLogicTask):
    name = "binairo"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 4 / 6 / 8 and the share of cells revealed first (more until unique)"
    _levels = [(4, 0.25), (6, 0.25), (6, 0.15), (8, 0.2), (8, 0.1)]

    def make(self, rng, difficulty):
        n, share = level(difficulty, self._levels)
        grid = self._solution(rng, n)
        cells = [(r, c) for r in range(n) for c in range(n)]
        constraints = self._constraints(n)
        shown = reveal_until_unique(
            rng, {(r, c): grid[r][c] + 1 for r, c in cells},  # solver values: digit + 1
            set(rng.sample(cells, round(n * n * share))),
            lambda givens: grid_solutions(cells, [1, 2], givens, constraints))
        hidden = set(cells) - shown
        givens = [[r, c, grid[r][c]] for r in range(n) for c in range(n) if (r, c) not in hidden]
        question = (f"Binairo: fill the {n}x{n} grid with 0 and 1 so that every row and column has "
                    f"as many 0s as 1s, no three equal digits are adjacent in a row or column, and "
                    f"no two rows and no two columns are identical.\n"
                    f"{format_grid(_masked(grid, hidden))}\n"
                    f"Answer with the full grid, one row per line, digits separated by spaces. "
                    f"{ANSWER_TAGS}")
        return question, format_grid(grid), {"n": n, "givens": givens}

    @staticmethod
    def _constraints(n):
        """The line rules only: a puzzle unique without the distinct-lines rule is unique with it,
        and leaving it out keeps the search fast (it would tie every pair of lines together)."""
        def line(vals):
            return (vals.count(1) <= n // 2 and vals.count(2) <= n // 2
                    and all(not vals[i] or not vals[i] == vals[i + 1] == vals[i + 2]
                            for i in range(n - 2)))

        return [([(r, c) for c in range(n)], line) for r in range(n)] + \
               [([(r, c) for r in range(n)], line) for c in range(n)]

    @staticmethod
    def _solution(rng, n):
        """Random rows that obey the line rules, stacked by backtracking over the columns."""
        rows = []

        def lines():
            out = []

            def grow(prefix):
                if len(prefix) == n:
                    if _binairo_line_ok(prefix, n):
                        out.append(prefix)
                    return
                for bit in (0, 1):
                    nxt = prefix + [bit]
                    if nxt.count(bit) <= n // 2 and not (len(nxt) >= 3 and nxt[-1] == nxt[-2] == nxt[-3]):
                        grow(nxt)
            grow([])
            return out

        candidates = lines()

        def cols_ok(stack):
            k = len(stack)
            for c in range(n):
                col = [row[c] for row in stack]
                if col.count(0) > n // 2 or col.count(1) > n // 2:
                    return False
                if k >= 3 and col[-1] == col[-2] == col[-3]:
                    return False
            return True

        def place():
            if len(rows) == n:
                cols = [tuple(row[c] for row in rows) for c in range(n)]
                return len(set(cols)) == n
            for row in rng.sample(candidates, len(candidates)):
                if row not in rows and cols_ok(rows + [row]):
                    rows.append(row)
                    if place():
                        return True
                    rows.pop()
            return False

        place()
        return rows

    def check(self, item, answer):
        meta = item["metadata"]
        n = meta["n"]
        grid = parse_int_grid(answer, n, n)
        cols = [[grid[r][c] for r in range(n)] for c in range(n)]
        return float(all(_binairo_line_ok(line, n) for line in grid + cols)
                     and len({tuple(r) for r in grid}) == n and len({tuple(c) for c in cols}) == n
                     and _givens_kept(grid, meta["givens"]))


for _task in (Sudoku(), Futoshiki(), Skyscraper(), Calcudoku(), Binairo()):
    register(_task)
