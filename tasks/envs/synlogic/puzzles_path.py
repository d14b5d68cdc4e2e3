"""Path puzzles: Numbrix, Maze, Arrow maze.

Numbrix draws a random Hamiltonian path (backbite moves) and reveals numbers until a path search
finds it alone. Maze carves a random maze and accepts any shortest path. Arrow maze grows rays of
arrows out of numbered cells until every cell is covered; any filling that meets the numbers and
leaves no arrow outside a ray scores 1.0.
"""

from __future__ import annotations

import re
from collections import deque

from tasks.envs.base import register
from tasks.envs.synlogic.base import (ANSWER_TAGS, Cell, SynLogicTask, format_grid, level, neighbours4,
                                 parse_int_grid, reveal_until_unique)


def numbrix_solutions(n: int, givens: dict[Cell, int], limit: int = 2,
                      budget: int = 5000) -> list[dict[Cell, int]] | None:
    """Up to ``limit`` Numbrix fillings (cell -> 1..n*n) that keep ``givens``; None past ``budget``
    search nodes. The path grows from 1; a cell is tried for k only if the next given number is
    still reachable from it: within its Manhattan distance, with the same parity (the grid is
    bipartite)."""
    total = n * n
    cell_of = {k: cell for cell, k in givens.items()}
    next_given = [0] * (total + 2)  # next_given[k]: the smallest given number >= k (0: none)
    for k in range(total, 0, -1):
        next_given[k] = k if k in cell_of else next_given[k + 1]
    taken: dict[Cell, int] = {}
    found: list[dict[Cell, int]] = []
    nodes = 0

    def fits(cell, k):
        if cell in taken or givens.get(cell, k) != k or cell_of.get(k, cell) != cell:
            return False
        j = next_given[k + 1] if k < total else 0
        if j:
            gap = abs(cell[0] - cell_of[j][0]) + abs(cell[1] - cell_of[j][1])
            return gap <= j - k and (j - k - gap) % 2 == 0
        return True

    def grow(cell, k):
        nonlocal nodes
        nodes += 1
        taken[cell] = k
        if k == total:
            found.append(dict(taken))
        else:
            for nb in neighbours4(*cell, n, n):
                if len(found) >= limit or nodes > budget:
                    break
                if fits(nb, k + 1):
                    grow(nb, k + 1)
        del taken[cell]

    for r in range(n):
        for c in range(n):
            if fits((r, c), 1) and len(found) < limit and nodes <= budget:
                grow((r, c), 1)
    return None if nodes > budget else found


class Numbrix(SynLogicTask):
    name = "numbrix"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 3-7 and the share of numbers revealed first, 40% to 15% (more until unique)"
    _levels = [(3, 0.4), (4, 0.3), (5, 0.25), (6, 0.2), (7, 0.15)]

    def make(self, rng, difficulty):
        n, share = level(difficulty, self._levels)
        path = [(r, c if r % 2 == 0 else n - 1 - c) for r in range(n) for c in range(n)]
        for _ in range(n * n * 20):
            # backbite: join the end to a neighbour on the path and reverse the part after it
            if rng.random() < 0.5:
                path.reverse()
            end = path[-1]
            pos = {cell: i for i, cell in enumerate(path)}
            i = pos[rng.choice(list(neighbours4(*end, n, n)))]
            if i != len(path) - 2:
                path = path[:i + 1] + path[i + 1:][::-1]
        grid = [[0] * n for _ in range(n)]
        for k, (r, c) in enumerate(path):
            grid[r][c] = k + 1
        start = set(rng.sample(path, max(2, round(n * n * share))))
        shown = reveal_until_unique(rng, {cell: k + 1 for k, cell in enumerate(path)}, start,
                                    lambda givens: numbrix_solutions(n, givens))
        givens = [[r, c, grid[r][c]] for r, c in sorted(shown)]
        board = [[str(grid[r][c]) if (r, c) in shown else "." for c in range(n)] for r in range(n)]
        question = (f"Numbrix: fill the {n}x{n} grid with the numbers 1-{n * n}, each once, so that "
                    f"consecutive numbers are in cells that share a side (a path from 1 to "
                    f"{n * n}). Keep the given numbers.\n{format_grid(board)}\n"
                    f"Answer with the full grid, one row per line, numbers separated by spaces. "
                    f"{ANSWER_TAGS}")
        return question, format_grid(grid), {"n": n, "givens": givens}

    def check(self, item, answer):
        meta = item["metadata"]
        n = meta["n"]
        grid = parse_int_grid(answer, n, n)
        where = {grid[r][c]: (r, c) for r in range(n) for c in range(n)}
        if sorted(where) != list(range(1, n * n + 1)):
            return 0.0
        steps_ok = all(abs(where[k][0] - where[k + 1][0]) + abs(where[k][1] - where[k + 1][1]) == 1
                       for k in range(1, n * n))
        return float(steps_ok and all(grid[r][c] == v for r, c, v in meta["givens"]))


_MOVES = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}


class Maze(SynLogicTask):
    name = "maze"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "maze 3x3 to 9x9 rooms (grid 7 to 19 characters)"
    _levels = [3, 4, 5, 7, 9]

    def make(self, rng, difficulty):
        rooms = level(difficulty, self._levels)
        size = 2 * rooms + 1
        grid = [["#"] * size for _ in range(size)]
        stack, seen = [(0, 0)], {(0, 0)}
        grid[1][1] = "."
        while stack:  # depth-first carving, then a few extra openings so paths are not unique
            r, c = stack[-1]
            nxt = [(r + dr, c + dc) for dr, dc in _MOVES.values()
                   if 0 <= r + dr < rooms and 0 <= c + dc < rooms and (r + dr, c + dc) not in seen]
            if not nxt:
                stack.pop()
                continue
            rr, cc = rng.choice(nxt)
            grid[2 * rr + 1][2 * cc + 1] = grid[r + rr + 1][c + cc + 1] = "."
            seen.add((rr, cc))
            stack.append((rr, cc))
        for _ in range(rooms):
            r, c = rng.randrange(1, size - 1), rng.randrange(1, size - 1)
            if (r + c) % 2 == 1:
                grid[r][c] = "."
        grid[1][1], grid[size - 2][size - 2] = "S", "G"
        path = self._shortest(grid, (1, 1), (size - 2, size - 2))
        question = ("Find a shortest path from S to G in the maze ('#' is wall, '.' is open; move "
                    "up, down, left or right):\n" + "\n".join("".join(row) for row in grid) + "\n"
                    "Answer with the moves as letters U, D, L, R without spaces. " + ANSWER_TAGS)
        return question, path, {"grid": ["".join(row) for row in grid], "length": len(path)}

    @staticmethod
    def _shortest(grid, start, goal):
        prev = {start: None}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            if cell == goal:
                break
            for move, (dr, dc) in _MOVES.items():
                nb = (cell[0] + dr, cell[1] + dc)
                if grid[nb[0]][nb[1]] != "#" and nb not in prev:
                    prev[nb] = (cell, move)
                    queue.append(nb)
        moves, cell = [], goal
        while prev[cell] is not None:
            cell, move = prev[cell]
            moves.append(move)
        return "".join(reversed(moves))

    def check(self, item, answer):
        grid = item["metadata"]["grid"]
        moves = re.sub(r"[\s,]", "", answer.upper())
        if len(moves) != item["metadata"]["length"] or set(moves) - set(_MOVES):
            return 0.0
        r, c = 1, 1
        for move in moves:
            r, c = r + _MOVES[move][0], c + _MOVES[move][1]
            if grid[r][c] == "#":
                return 0.0
        return float(grid[r][c] == "G")


_ARROWS = {"↑": (-1, 0), "↓": (1, 0), "←": (0, -1), "→": (0, 1),
           "↖": (-1, -1), "↗": (-1, 1), "↘": (1, 1), "↙": (1, -1)}


def _rays(grid: list[list[str]]) -> tuple[dict[Cell, int], set[Cell]]:
    """Each numbered cell's total ray length, and the arrow cells that lie on some ray.

    A ray of a number runs from the next cell in one of the eight directions over consecutive
    arrows that all point that way."""
    n_rows, n_cols = len(grid), len(grid[0])
    totals: dict[Cell, int] = {}
    on_ray: set[Cell] = set()
    for r in range(n_rows):
        for c in range(n_cols):
            if not grid[r][c].isdigit():
                continue
            totals[(r, c)] = 0
            for sym, (dr, dc) in _ARROWS.items():
                rr, cc = r + dr, c + dc
                while 0 <= rr < n_rows and 0 <= cc < n_cols and grid[rr][cc] == sym:
                    on_ray.add((rr, cc))
                    totals[(r, c)] += 1
                    rr, cc = rr + dr, cc + dc
    return totals, on_ray


class ArrowMaze(SynLogicTask):
    name = "arrow_maze"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "grid 3x3 to 7x7 and numbered cells 30% to 15%"
    _levels = [(3, 0.3), (4, 0.25), (5, 0.2), (6, 0.18), (7, 0.15)]

    def make(self, rng, difficulty):
        n, share = level(difficulty, self._levels)
        cells = [(r, c) for r in range(n) for c in range(n)]
        numbers = set(rng.sample(cells, max(1, round(n * n * share))))
        in_grid = set(cells)
        arrows: dict[Cell, str] = {}
        for r, c in sorted(numbers):  # every number first starts one ray, where it has room
            options = [(sym, (r + dr, c + dc)) for sym, (dr, dc) in _ARROWS.items()
                       if (r + dr, c + dc) in in_grid and (r + dr, c + dc) not in numbers | arrows.keys()]
            if options:
                sym, cell = rng.choice(options)
                arrows[cell] = sym
        still_open = [cell for cell in cells if cell not in numbers and cell not in arrows]
        while still_open:
            # an open cell joins a ray in direction d when the cell behind it is a number or an
            # arrow pointing d (it then lengthens that ray)
            rng.shuffle(still_open)
            left = []
            for r, c in still_open:
                options = [sym for sym, (dr, dc) in _ARROWS.items()
                           if (r - dr, c - dc) in numbers or arrows.get((r - dr, c - dc)) == sym]
                if options:
                    arrows[(r, c)] = rng.choice(options)
                else:
                    left.append((r, c))
            if len(left) == len(still_open):  # no ray reaches them: one becomes a number
                numbers.add(left.pop(rng.randrange(len(left))))
            still_open = left
        solved = [[arrows.get((r, c), "0") for c in range(n)] for r in range(n)]
        totals, _ = _rays(solved)
        for (r, c), total in totals.items():
            solved[r][c] = str(total)
        board = [[solved[r][c] if (r, c) in numbers else "X" for c in range(n)] for r in range(n)]
        question = (f"Arrow maze on a {n}x{n} grid: replace every X with one of the arrows "
                    f"{' '.join(_ARROWS)}. A ray of a number is a run of arrows that starts next to "
                    f"it and all point away from it in the same direction (up, down, left, right or "
                    f"diagonal); each number equals the total length of its rays (0 for none), and "
                    f"every arrow must lie on a ray of some number.\n{format_grid(board)}\n"
                    f"Answer with the full grid, one row per line, cells separated by spaces, "
                    f"numbers kept. {ANSWER_TAGS}")
        return question, format_grid(solved), {"board": board}

    def check(self, item, answer):
        board = item["metadata"]["board"]
        n_rows, n_cols = len(board), len(board[0])
        grid = [line.split() for line in answer.strip().splitlines() if line.strip()]
        if len(grid) != n_rows or any(len(row) != n_cols for row in grid):
            return 0.0
        cells = [(r, c) for r in range(n_rows) for c in range(n_cols)]
        for r, c in cells:
            want = board[r][c]
            if (want != "X" and grid[r][c] != want) or (want == "X" and grid[r][c] not in _ARROWS):
                return 0.0
        totals, on_ray = _rays(grid)
        arrows = {(r, c) for r, c in cells if board[r][c] == "X"}
        return float(arrows <= on_ray and all(totals[cell] == int(board[cell[0]][cell[1]])
                                              for cell in totals))


for _task in (Numbrix(), Maze(), ArrowMaze()):
    register(_task)
