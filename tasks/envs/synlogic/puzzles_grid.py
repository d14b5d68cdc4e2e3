"""Shading and placement puzzles on a grid: Kakurasu, Survo, Star placement, Campsite,
Minesweeper, Norinori, Nonogram.

As for the Latin puzzles, the solution is drawn first and the clues are read off it; then cells
(Minesweeper: numbers) are revealed until a solver, or for Kakurasu and Nonogram line-by-line
deduction, finds that solution alone. Verifiers check the rules, clues and revealed cells.
"""

from __future__ import annotations

import itertools
import random

from tasks.envs.base import register
from tasks.envs.synlogic.base import (ANSWER_TAGS, Cell, SynLogicTask, format_grid, grid_solutions,
                                 level, neighbours4, neighbours8, parse_char_grid, parse_coords,
                                 parse_int_grid, random_regions, reveal_until_unique)

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _char_rows(rows: list[str]) -> str:
    return "\n".join(" ".join(row) for row in rows)


def _runs(line) -> list[int]:
    out, run = [], 0
    for filled in line:
        if filled:
            run += 1
        elif run:
            out.append(run)
            run = 0
    return out + [run] if run else out


#: a line of cells and every filling of it (True = filled) that meets its clue
Line = tuple[list[Cell], list[tuple[bool, ...]]]


def _line_solve(lines: list[Line], known: dict[Cell, bool]) -> dict[Cell, bool]:
    """Cells fixed by line-by-line deduction: a cell is known once every filling of one of its
    lines that agrees with what is known so far gives it the same value."""
    known = dict(known)
    changed = True
    while changed:
        changed = False
        for cells, fillings in lines:
            fit = [f for f in fillings if all(known.get(c, v) == v for c, v in zip(cells, f))]
            for k, cell in enumerate(cells):
                if cell not in known and fit and all(f[k] == fit[0][k] for f in fit):
                    known[cell] = fit[0][k]
                    changed = True
    return known


def _reveal_by_logic(rng: random.Random, filled: dict[Cell, bool], lines: list[Line]) -> set[Cell]:
    """Reveal cells until line deduction fixes the whole grid, so its solution is unique."""
    shown: set[Cell] = set()
    while True:
        known = _line_solve(lines, {cell: filled[cell] for cell in shown})
        still_open = sorted(cell for cell in filled if cell not in known)
        if not still_open:
            return shown
        shown.add(rng.choice(still_open))


def _reveal_binary(rng: random.Random, filled: dict[Cell, bool], constraints) -> set[Cell]:
    """Reveal cells until the solver finds the drawn filling alone (solver values: 1 empty, 2 filled)."""
    cells = sorted(filled)
    solution = {cell: 2 if filled[cell] else 1 for cell in cells}
    return reveal_until_unique(rng, solution, set(),
                               lambda givens: grid_solutions(cells, [1, 2], givens, constraints))


def _known_cells(filled: dict[Cell, bool], shown: set[Cell], n: int, on: str, off: str) -> str:
    """The revealed cells as a grid ('?' where open), or nothing when none is revealed."""
    if not shown:
        return ""
    rows = ["".join((on if filled[(r, c)] else off) if (r, c) in shown else "?" for c in range(n))
            for r in range(n)]
    what = "filled" if on == "#" else "star"
    return f"Known cells ('{on}' {what}, '{off}' empty, '?' open):\n{_char_rows(rows)}\n"


def _known_kept(grid: list[str], known: list[list[int]], on: str) -> bool:
    return all((grid[r][c] == on) == bool(v) for r, c, v in known)


def _exactly(k: int):
    """Solver constraint: exactly k of the cells filled (value 2), counting open cells as either."""
    return lambda vals: vals.count(2) <= k <= vals.count(2) + vals.count(0)


class Kakurasu(SynLogicTask):
    name = "kakurasu"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 3-7 (cells revealed until line logic solves it)"
    _levels = [3, 4, 5, 6, 7]

    def make(self, rng, difficulty):
        n = level(difficulty, self._levels)
        shade = [[rng.random() < 0.45 for _ in range(n)] for _ in range(n)]
        rows, cols = self._clues(shade, n)
        weights = list(range(1, n + 1))
        fillings = lambda clue: [f for f in itertools.product((False, True), repeat=n)  # noqa: E731
                                 if sum(w for w, on in zip(weights, f) if on) == clue]
        lines = [([(r, c) for c in range(n)], fillings(rows[r])) for r in range(n)]
        lines += [([(r, c) for r in range(n)], fillings(cols[c])) for c in range(n)]
        filled = {(r, c): shade[r][c] for r in range(n) for c in range(n)}
        shown = _reveal_by_logic(rng, filled, lines)
        question = (f"Kakurasu on a {n}x{n} grid: shade some cells. A shaded cell in column j is "
                    f"worth j to its row, a shaded cell in row i is worth i to its column (counting "
                    f"from 1). Each row's shaded values must add up to its row clue, each column's "
                    f"to its column clue.\nRow clues (top to bottom): {' '.join(map(str, rows))}\n"
                    f"Column clues (left to right): {' '.join(map(str, cols))}\n"
                    f"{_known_cells(filled, shown, n, '#', '.')}"
                    f"Answer with the grid, one row per line, '#' for shaded and '.' for empty. "
                    f"{ANSWER_TAGS}")
        answer = _char_rows(["".join("#" if s else "." for s in row) for row in shade])
        known = [[r, c, int(filled[(r, c)])] for r, c in sorted(shown)]
        return question, answer, {"n": n, "rows": rows, "cols": cols, "known": known}

    @staticmethod
    def _clues(shade, n):
        rows = [sum(c + 1 for c in range(n) if shade[r][c]) for r in range(n)]
        cols = [sum(r + 1 for r in range(n) if shade[r][c]) for c in range(n)]
        return rows, cols

    def check(self, item, answer):
        meta = item["metadata"]
        n = meta["n"]
        grid = parse_char_grid(answer, n, n, "#.")
        rows, cols = self._clues([[ch == "#" for ch in row] for row in grid], n)
        return float(rows == meta["rows"] and cols == meta["cols"]
                     and _known_kept(grid, meta["known"], "#"))


class Survo(SynLogicTask):
    name = "survo"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 2x3 to 4x4 and hidden cells 3-10 (fewer where needed for a unique solution)"
    _levels = [(2, 3, 3), (3, 3, 4), (3, 4, 6), (3, 4, 8), (4, 4, 10)]

    def make(self, rng, difficulty):
        m, n, n_hidden = level(difficulty, self._levels)
        values = rng.sample(range(1, m * n + 1), m * n)
        grid = [values[r * n:(r + 1) * n] for r in range(m)]
        rows, cols = [sum(row) for row in grid], [sum(grid[r][c] for r in range(m)) for c in range(n)]
        cells = [(r, c) for r in range(m) for c in range(n)]
        constraints = self._constraints(m, n, rows, cols)

        def solve(givens):
            missing = sorted(set(range(1, m * n + 1)) - set(givens.values()))
            return grid_solutions(cells, missing, givens, constraints)

        start = set(cells) - set(rng.sample(cells, n_hidden))
        shown = reveal_until_unique(rng, {(r, c): grid[r][c] for r, c in cells}, start, solve)
        hidden = set(cells) - shown
        givens = [[r, c, grid[r][c]] for r in range(m) for c in range(n) if (r, c) not in hidden]
        board = "\n".join(
            " ".join("." if (r, c) in hidden else str(grid[r][c]) for c in range(n))
            + f" | {rows[r]}" for r in range(m))
        question = (f"Survo puzzle: fill the {m}x{n} grid so that it holds each number 1-{m * n} "
                    f"exactly once, each row adds up to the number after '|' and each column to "
                    f"the number below it.\n{board}\n{' '.join(map(str, cols))}\n"
                    f"Answer with the full grid (without the sums), one row per line, numbers "
                    f"separated by spaces. {ANSWER_TAGS}")
        return question, format_grid(grid), {"shape": [m, n], "givens": givens, "rows": rows,
                                             "cols": cols}

    @staticmethod
    def _constraints(m, n, rows, cols):
        def adds_to(target):
            def ok(vals):  # every open cell adds at least 1
                return sum(vals) + vals.count(0) <= target and (0 in vals or sum(vals) == target)
            return ok

        def distinct(vals):
            placed = [v for v in vals if v]
            return len(placed) == len(set(placed))

        lines = [([(r, c) for c in range(n)], adds_to(rows[r])) for r in range(m)]
        lines += [([(r, c) for r in range(m)], adds_to(cols[c])) for c in range(n)]
        return lines + [([(r, c) for r in range(m) for c in range(n)], distinct)]

    def check(self, item, answer):
        meta = item["metadata"]
        m, n = meta["shape"]
        grid = parse_int_grid(answer, m, n)
        return float(sorted(v for row in grid for v in row) == list(range(1, m * n + 1))
                     and [sum(row) for row in grid] == meta["rows"]
                     and [sum(grid[r][c] for r in range(m)) for c in range(n)] == meta["cols"]
                     and all(grid[r][c] == v for r, c, v in meta["givens"]))


class StarPlacement(SynLogicTask):
    name = "star_placement"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 4-8 (one star per row, column and region; cells revealed until unique)"
    _levels = [4, 5, 6, 7, 8]

    def make(self, rng, difficulty):
        n = level(difficulty, self._levels)
        cols = self._placement(rng, n)
        region = random_regions(rng, [[(r, cols[r])] for r in range(n)], n, n)
        filled = {(r, c): c == cols[r] for r in range(n) for c in range(n)}
        shown = _reveal_binary(rng, filled, self._constraints(n, region))
        regions = "\n".join(" ".join(_LETTERS[v] for v in row) for row in region)
        question = (f"Star placement on a {n}x{n} grid divided into {n} lettered regions: place "
                    f"{n} stars so that every row, every column and every region holds exactly one "
                    f"star and no two stars touch, not even diagonally.\n{regions}\n"
                    f"{_known_cells(filled, shown, n, '*', '.')}"
                    f"Answer with the grid, one row per line, '*' for a star and '.' for empty. "
                    f"{ANSWER_TAGS}")
        answer = _char_rows(["".join("*" if c == cols[r] else "." for c in range(n))
                             for r in range(n)])
        known = [[r, c, int(filled[(r, c)])] for r, c in sorted(shown)]
        return question, answer, {"n": n, "region": region, "known": known}

    @staticmethod
    def _constraints(n, region):
        one = lambda vals: vals.count(2) <= 1 <= vals.count(2) + vals.count(0)  # noqa: E731
        groups = [[(r, c) for c in range(n)] for r in range(n)]
        groups += [[(r, c) for r in range(n)] for c in range(n)]
        groups += [[(r, c) for r in range(n) for c in range(n) if region[r][c] == k] for k in range(n)]
        apart = lambda vals: vals != [2, 2]  # noqa: E731
        pairs = [[(r, c), nb] for r in range(n) for c in range(n)
                 for nb in neighbours8(r, c, n, n) if nb > (r, c)]
        return [(g, one) for g in groups] + [(p, apart) for p in pairs]

    @staticmethod
    def _placement(rng, n):
        """A permutation whose consecutive rows' columns differ by more than one (no touching)."""
        cols: list[int] = []

        def place():
            if len(cols) == n:
                return True
            for c in rng.sample(range(n), n):
                if c not in cols and (not cols or abs(cols[-1] - c) > 1):
                    cols.append(c)
                    if place():
                        return True
                    cols.pop()
            return False

        place()
        return cols

    def check(self, item, answer):
        meta = item["metadata"]
        n, region = meta["n"], meta["region"]
        grid = parse_char_grid(answer, n, n, "*.")
        stars = [(r, c) for r in range(n) for c in range(n) if grid[r][c] == "*"]
        return float(len(stars) == n and _known_kept(grid, meta["known"], "*")
                     and len({r for r, _ in stars}) == n
                     and len({c for _, c in stars}) == n
                     and len({region[r][c] for r, c in stars}) == n
                     and not any(abs(r1 - r2) <= 1 and abs(c1 - c2) <= 1
                                 for i, (r1, c1) in enumerate(stars) for r2, c2 in stars[i + 1:]))


def _has_perfect_matching(tents, trees) -> bool:
    """Every tent paired with its own orthogonally adjacent tree (augmenting paths)."""
    if len(tents) != len(trees):
        return False
    trees = set(trees)
    owner: dict[tuple[int, int], tuple[int, int]] = {}

    def assign(tent, seen):
        r, c = tent
        for tree in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if tree in trees and tree not in seen:
                seen.add(tree)
                if tree not in owner or assign(owner[tree], seen):
                    owner[tree] = tent
                    return True
        return False

    return all(assign(tent, set()) for tent in tents)


class Campsite(SynLogicTask):
    name = "campsite"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 5-9 and trees 4-13 (cells revealed until unique)"
    _levels = [(5, 4), (6, 6), (7, 8), (8, 10), (9, 13)]

    def make(self, rng, difficulty):
        n, want = level(difficulty, self._levels)
        tents, trees = [], []
        cells = [(r, c) for r in range(n) for c in range(n)]
        rng.shuffle(cells)
        for r, c in cells:
            if len(tents) == want:
                break
            if (r, c) in trees or any(nb in tents for nb in neighbours8(r, c, n, n)):
                continue
            spots = [nb for nb in neighbours4(r, c, n, n) if nb not in trees and nb not in tents]
            if spots:
                tents.append((r, c))
                trees.append(rng.choice(spots))
        rows = [sum(1 for r, _ in tents if r == i) for i in range(n)]
        cols = [sum(1 for _, c in tents if c == i) for i in range(n)]
        spots = sorted({nb for t in trees for nb in neighbours4(*t, n, n)} - set(trees))
        shown = reveal_until_unique(
            rng, {cell: 2 if cell in tents else 1 for cell in spots}, set(),
            lambda givens: grid_solutions(spots, [1, 2], givens,
                                          self._constraints(n, trees, spots, rows, cols)))
        board = [["T" if (r, c) in trees else "." for c in range(n)] for r in range(n)]
        known_board = [["T" if (r, c) in trees else "." if (r, c) not in shown
                        else "C" if (r, c) in tents else "-" for c in range(n)] for r in range(n)]
        known_text = " 'C' is a tent already placed, '-' a cell known to hold none." if shown else ""
        question = (f"Campsite: the {n}x{n} grid shows trees (T). Place one tent next to each tree "
                    f"(above, below, left or right of it), each tent belonging to a different "
                    f"tree; no two tents may touch, not even diagonally; each row and column must "
                    f"hold the number of tents given.{known_text}\n{format_grid(known_board)}\n"
                    f"Tents per row (top to bottom): {' '.join(map(str, rows))}\n"
                    f"Tents per column (left to right): {' '.join(map(str, cols))}\n"
                    f"Answer with the grid, one row per line: 'T' for trees, 'C' for tents, '.' "
                    f"for empty. {ANSWER_TAGS}")
        answer = _char_rows(["".join("C" if (r, c) in tents else board[r][c] for c in range(n))
                             for r in range(n)])
        known = [[r, c, int((r, c) in tents)] for r, c in sorted(shown)]
        return question, answer, {"n": n, "trees": [list(t) for t in trees], "rows": rows,
                                  "cols": cols, "known": known}

    @staticmethod
    def _constraints(n, trees, spots, rows, cols):
        """Tents go only next to trees (``spots``); the tent-to-tree pairing is relaxed to 'every
        tree has a tent beside it', so a puzzle unique under these rules is unique under all."""
        some = lambda vals: vals.count(2) + vals.count(0) >= 1  # noqa: E731
        apart = lambda vals: vals != [2, 2]  # noqa: E731
        spot_set = set(spots)
        out = [([x for x in spots if x[0] == i], _exactly(rows[i])) for i in range(n)]
        out += [([x for x in spots if x[1] == i], _exactly(cols[i])) for i in range(n)]
        out += [([nb for nb in neighbours4(*t, n, n) if nb in spot_set], some) for t in trees]
        return out + [([x, nb], apart) for x in spots for nb in neighbours8(*x, n, n)
                      if nb in spot_set and nb > x]

    def check(self, item, answer):
        meta = item["metadata"]
        n = meta["n"]
        grid = parse_char_grid(answer, n, n, "TC.")
        trees = {tuple(t) for t in meta["trees"]}
        if {(r, c) for r in range(n) for c in range(n) if grid[r][c] == "T"} != trees:
            return 0.0
        tents = [(r, c) for r in range(n) for c in range(n) if grid[r][c] == "C"]
        return float(
            _known_kept(grid, meta["known"], "C")
            and [row.count("C") for row in grid] == meta["rows"]
            and [sum(grid[r][c] == "C" for r in range(n)) for c in range(n)] == meta["cols"]
            and not any(grid[rr][cc] == "C" for r, c in tents for rr, cc in neighbours8(r, c, n, n))
            and _has_perfect_matching(tents, trees))


class Minesweeper(SynLogicTask):
    name = "minesweeper"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 4x4 to 8x8, mines 3-13, safe cells revealed first 50% to 30% (more until unique)"
    _levels = [(4, 3, 0.5), (5, 5, 0.45), (6, 7, 0.4), (7, 10, 0.35), (8, 13, 0.3)]

    def make(self, rng, difficulty):
        n, n_mines, reveal = level(difficulty, self._levels)
        cells = [(r, c) for r in range(n) for c in range(n)]
        mines = sorted(rng.sample(cells, n_mines))
        safe = [cell for cell in cells if cell not in mines]
        shown = self._reveal(rng, n, set(mines), set(rng.sample(safe, round(len(safe) * reveal))))
        counts = {(r, c): sum(nb in mines for nb in neighbours8(r, c, n, n)) for r, c in shown}
        board = [[str(counts[(r, c)]) if (r, c) in shown else "?" for c in range(n)]
                 for r in range(n)]
        question = (f"Minesweeper: the {n}x{n} board hides exactly {n_mines} mines under the '?' "
                    f"cells. A number is how many of its (up to 8) neighbours are mines; revealed "
                    f"cells are safe.\n{format_grid(board)}\n"
                    f"Answer with the positions of all {n_mines} mines as (row,column) pairs "
                    f"counted from 1, e.g. (1,2), (3,4). {ANSWER_TAGS}")
        answer = ", ".join(f"({r + 1},{c + 1})" for r, c in mines)
        return question, answer, {"n": n, "mines": n_mines,
                                  "revealed": [[r, c, v] for (r, c), v in sorted(counts.items())]}

    @staticmethod
    def _reveal(rng, n, mines, shown):
        """Reveal more safe cells until the numbers and the mine count leave one mine layout: while
        another layout fits, a safe cell that it takes for a mine is revealed."""
        shown = set(shown)
        while True:
            unknown = sorted((r, c) for r in range(n) for c in range(n) if (r, c) not in shown)
            constraints = [(unknown, _exactly(len(mines)))]
            for r, c in shown:
                near = [nb for nb in neighbours8(r, c, n, n) if nb not in shown]
                constraints.append((near, _exactly(sum(nb in mines for nb in near))))
            sols = grid_solutions(unknown, [1, 2], {}, constraints)
            if sols is not None and len(sols) == 1:
                return shown
            other = next((s for s in sols or [] if any((s[x] == 2) != (x in mines) for x in unknown)),
                         None)
            pool = [x for x in unknown if x not in mines and (other is None or other[x] == 2)]
            shown.add(rng.choice(pool))

    def check(self, item, answer):
        meta = item["metadata"]
        n = meta["n"]
        mines = {(r - 1, c - 1) for r, c in parse_coords(answer)}
        revealed = {(r, c): v for r, c, v in meta["revealed"]}
        return float(
            len(mines) == meta["mines"] and all(0 <= r < n and 0 <= c < n for r, c in mines)
            and not mines & revealed.keys()
            and all(sum(nb in mines for nb in neighbours8(r, c, n, n)) == v
                    for (r, c), v in revealed.items()))


class Norinori(SynLogicTask):
    name = "norinori"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 4-8 (cells revealed until unique)"
    _levels = [4, 5, 6, 7, 8]

    def make(self, rng, difficulty):
        n = level(difficulty, self._levels)
        shaded: set[tuple[int, int]] = set()
        dominoes = []
        for _ in range(n * n):
            r, c = rng.randrange(n), rng.randrange(n)
            dr, dc = rng.choice(((0, 1), (1, 0)))
            pair = [(r, c), (r + dr, c + dc)]
            if r + dr >= n or c + dc >= n:
                continue
            near = {nb for cell in pair for nb in neighbours4(*cell, n, n)} | set(pair)
            if not near & shaded:
                shaded.update(pair)
                dominoes.append(pair)
        region = random_regions(rng, dominoes, n, n)
        filled = {(r, c): (r, c) in shaded for r in range(n) for c in range(n)}
        shown = _reveal_binary(rng, filled, self._constraints(n, region, len(dominoes)))
        regions = "\n".join(" ".join(_LETTERS[v] for v in row) for row in region)
        question = (f"Norinori on a {n}x{n} grid divided into lettered regions: shade cells so "
                    f"that every region holds exactly two shaded cells and every shaded cell has "
                    f"exactly one shaded neighbour (above, below, left or right), so shaded cells "
                    f"form separate dominoes.\n{regions}\n{_known_cells(filled, shown, n, '#', '.')}"
                    f"Answer with the grid, one row per line, '#' for shaded and '.' for empty. "
                    f"{ANSWER_TAGS}")
        answer = _char_rows(["".join("#" if (r, c) in shaded else "." for c in range(n))
                             for r in range(n)])
        known = [[r, c, int(filled[(r, c)])] for r, c in sorted(shown)]
        return question, answer, {"n": n, "region": region, "known": known}

    @staticmethod
    def _constraints(n, region, n_regions):
        two = lambda vals: vals.count(2) <= 2 <= vals.count(2) + vals.count(0)  # noqa: E731

        def domino(vals):
            """A shaded cell (first) has exactly one shaded neighbour (the rest)."""
            near = vals[1:]
            return vals[0] != 2 or near.count(2) <= 1 <= near.count(2) + near.count(0)

        groups = [[(r, c) for r in range(n) for c in range(n) if region[r][c] == k]
                  for k in range(n_regions)]
        around = [[(r, c), *neighbours4(r, c, n, n)] for r in range(n) for c in range(n)]
        return [(g, two) for g in groups] + [(cells, domino) for cells in around]

    def check(self, item, answer):
        meta = item["metadata"]
        n, region = meta["n"], meta["region"]
        grid = parse_char_grid(answer, n, n, "#.")
        shaded = [(r, c) for r in range(n) for c in range(n) if grid[r][c] == "#"]
        if not _known_kept(grid, meta["known"], "#"):
            return 0.0
        per_region = [0] * (max(max(row) for row in region) + 1)
        for r, c in shaded:
            per_region[region[r][c]] += 1
        return float(all(k == 2 for k in per_region) and all(
            sum(grid[rr][cc] == "#" for rr, cc in neighbours4(r, c, n, n)) == 1 for r, c in shaded))


def _placements(runs: list[int], n: int) -> list[tuple[bool, ...]]:
    """Every line of n cells whose runs of filled cells are ``runs``."""
    if not runs:
        return [(False,) * n]
    first, rest = runs[0], runs[1:]
    tail_min = sum(rest) + len(rest)
    out = []
    for start in range(n - first - tail_min + 1):
        head = (False,) * start + (True,) * first
        if rest:
            out += [head + (False,) + tail for tail in _placements(rest, n - len(head) - 1)]
        else:
            out.append(head + (False,) * (n - len(head)))
    return out


class Nonogram(SynLogicTask):
    name = "nonogram"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 4x4 to 10x10 (cells revealed until line logic solves it)"
    _levels = [4, 5, 6, 8, 10]

    def make(self, rng, difficulty):
        n = level(difficulty, self._levels)
        fill = [[rng.random() < 0.55 for _ in range(n)] for _ in range(n)]
        rows = [_runs(row) for row in fill]
        cols = [_runs([fill[r][c] for r in range(n)]) for c in range(n)]
        lines = [([(r, c) for c in range(n)], _placements(rows[r], n)) for r in range(n)]
        lines += [([(r, c) for r in range(n)], _placements(cols[c], n)) for c in range(n)]
        filled = {(r, c): fill[r][c] for r in range(n) for c in range(n)}
        shown = _reveal_by_logic(rng, filled, lines)
        fmt = lambda runs: " ".join(map(str, runs)) or "0"  # noqa: E731
        row_clues, col_clues = "\n".join(fmt(r) for r in rows), "\n".join(fmt(c) for c in cols)
        question = (f"Nonogram on a {n}x{n} grid: each clue lists, in order, the lengths of the "
                    f"runs of filled cells in that row or column (0 for none).\n"
                    f"Rows (top to bottom):\n{row_clues}\nColumns (left to right):\n{col_clues}\n"
                    f"{_known_cells(filled, shown, n, '#', '.')}"
                    f"Answer with the grid, one row per line, '#' for filled and '.' for empty. "
                    f"{ANSWER_TAGS}")
        answer = _char_rows(["".join("#" if f else "." for f in row) for row in fill])
        known = [[r, c, int(filled[(r, c)])] for r, c in sorted(shown)]
        return question, answer, {"n": n, "rows": rows, "cols": cols, "known": known}

    def check(self, item, answer):
        meta = item["metadata"]
        n = meta["n"]
        grid = parse_char_grid(answer, n, n, "#.")
        fill = [[ch == "#" for ch in row] for row in grid]
        return float([_runs(row) for row in fill] == meta["rows"]
                     and [_runs([fill[r][c] for r in range(n)]) for c in range(n)] == meta["cols"]
                     and _known_kept(grid, meta["known"], "#"))


for _task in (Kakurasu(), Survo(), StarPlacement(), Campsite(), Minesweeper(), Norinori(),
              Nonogram()):
    register(_task)
