"""SynLogic families: every reference answer verifies, corrupted ones fail, generation is seeded.

The registry loop covers every family at every difficulty level; the hand-built items below
check that verifiers judge an answer for what it is (any valid solution passes, rule breaks fail).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tasks.envs.base import Task, format_reward
from tasks.envs.synlogic import TASKS
from tasks.envs.synlogic.arithmetic_games import evaluate_expression
from tasks.envs.synlogic.base import (SynLogicTask, canon, grid_solutions, parse_coords, parse_int_grid,
                                  parse_ints)
from tasks.envs.synlogic.puzzles_grid import (Campsite, Norinori, StarPlacement, Survo, _has_perfect_matching,
                                         _line_solve, _placements, _runs)
from tasks.envs.synlogic.puzzles_path import numbrix_solutions
from tasks.envs.synlogic.puzzles_latin import (Binairo, _cage_partial, _skyline_constraints, _visible,
                                          count_sudoku_solutions, latin_solutions)

SYNLOGIC = sorted(name for name, task in TASKS.items() if isinstance(task, SynLogicTask))


def wrap(answer: str) -> str:
    return f"<think>Let me work it out.</think><answer>{answer}</answer>"


def test_registry_holds_at_least_thirty_families():
    assert len(SYNLOGIC) >= 30
    for name in SYNLOGIC:
        task = TASKS[name]
        assert isinstance(task, Task) and task.name == name and task.knobs
        lo, hi = task.difficulty_range
        assert 1 == lo < hi


@pytest.mark.parametrize("name", SYNLOGIC)
def test_reference_verifies_and_corruptions_fail(name):
    task = TASKS[name]
    lo, hi = task.difficulty_range
    for difficulty in range(lo, hi + 1):
        items = [json.loads(json.dumps(it)) for it in task.generate(3, seed=11, difficulty=difficulty)]
        for i, item in enumerate(items):
            assert set(item) == {"id", "question", "answer", "difficulty", "metadata"}
            assert isinstance(item["answer"], str) and item["difficulty"] == difficulty
            assert "<answer>" in item["question"]
            good = wrap(item["answer"])
            assert format_reward(good) == 1.0
            assert task.verify(item, good) == 1.0, (name, difficulty, item["answer"])
            # the final answer tag is the one that counts
            assert task.verify(item, wrap("nonsense") + wrap(item["answer"])) == 1.0
            assert task.verify(item, wrap(item["answer"]) + "<answer>nonsense</answer>") < 1.0
            assert task.verify(item, wrap(item["answer"].rstrip()[:-1])) < 1.0, (name, item["answer"])
            assert task.verify(item, wrap("")) == 0.0
            assert task.verify(item, item["answer"]) == 0.0  # no answer tag
            assert task.verify(item, "<think>" + item["answer"]) == 0.0
            assert task.verify(item, wrap("### ??? (0,0) = x")) < 1.0
            other = items[(i + 1) % len(items)]["answer"]
            # a rule-checked puzzle may accept another item's solution; a unique answer may not
            if not task.any_valid and canon(other) != canon(item["answer"]):
                assert task.verify(item, wrap(other)) < 1.0, (name, difficulty)


@pytest.mark.parametrize("name", SYNLOGIC)
def test_generation_is_seeded(name):
    task = TASKS[name]
    lo, hi = task.difficulty_range
    mid = (lo + hi) // 2
    first = task.generate(4, seed=3, difficulty=mid)
    assert first == task.generate(4, seed=3, difficulty=mid)
    assert task.generate(2, seed=3, difficulty=mid) == first[:2]
    assert [it["question"] for it in first] != [it["question"] for it in task.generate(4, 4, mid)]
    assert len({it["id"] for it in first}) == 4
    with pytest.raises(ValueError, match=name):
        task.generate(1, seed=0, difficulty=hi + 1)


def test_difficulty_grows_the_puzzle():
    assert len(TASKS["sudoku"].generate(1, 0, 1)[0]["answer"].split()) == 16
    assert len(TASKS["sudoku"].generate(1, 0, 6)[0]["answer"].split()) == 81
    assert TASKS["game_of_24"].generate(1, 0, 1)[0]["metadata"]["target"] == 24
    assert len(TASKS["game_of_24"].generate(1, 0, 5)[0]["metadata"]["numbers"]) == 6


def _item(name, answer="", **meta):
    return {"id": "x", "question": "", "answer": answer, "difficulty": 1, "metadata": meta}


def test_sudoku_accepts_any_valid_grid_and_keeps_givens():
    sudoku = TASKS["sudoku"]
    grid = "1 2 3 4\n3 4 1 2\n2 1 4 3\n4 3 2 1"
    other = "1 2 3 4\n3 4 1 2\n2 3 4 1\n4 1 2 3"  # also valid, differs from the reference
    item = _item("sudoku", grid, box=[2, 2], givens=[[0, 0, 1], [3, 3, 1]])
    assert sudoku.verify(item, wrap(grid)) == 1.0
    assert sudoku.verify(item, wrap(other)) == 0.0  # breaks the given 1 at row 4, column 4
    item["metadata"]["givens"] = [[0, 0, 1]]
    assert sudoku.verify(item, wrap(other)) == 1.0
    assert sudoku.verify(item, wrap("1 2 3 4\n3 4 1 2\n2 1 4 3\n4 3 1 2")) == 0.0  # columns repeat
    assert sudoku.verify(item, wrap("1,2,3,4 / 3,4,1,2 / 2,1,4,3 / 4,3,2,1")) == 1.0


def test_sudoku_puzzles_have_one_solution():
    assert count_sudoku_solutions([[0] * 4 for _ in range(4)], 2, 2, limit=1000) == 288
    for difficulty in (1, 3, 5):
        item = TASKS["sudoku"].generate(1, seed=2, difficulty=difficulty)[0]
        a, b = item["metadata"]["box"]
        puzzle = [[0] * (a * b) for _ in range(a * b)]
        for r, c, v in item["metadata"]["givens"]:
            puzzle[r][c] = v
        assert count_sudoku_solutions(puzzle, a, b) == 1


def test_latin_puzzles_have_one_solution():
    less = lambda v: not v[0] or not v[1] or v[0] < v[1]  # noqa: E731
    assert len(latin_solutions(4, {}, [], limit=1000, budget=10**6)) == 576  # Latin squares of order 4
    assert len(latin_solutions(4, {}, [([(0, 0), (0, 1)], less)], limit=1000, budget=10**6)) == 288
    for name in ("futoshiki", "skyscraper", "calcudoku"):
        for item in TASKS[name].generate(2, seed=5, difficulty=4):
            meta = item["metadata"]
            n = meta["n"]
            if name == "futoshiki":
                constraints = [([(a, b), (c, d)], less) for a, b, c, d in meta["ineqs"]]
            elif name == "skyscraper":
                constraints = _skyline_constraints(n, meta["clues"])
            else:
                constraints = [([tuple(x) for x in cage["cells"]], _cage_partial(cage["op"], cage["target"]))
                               for cage in meta["cages"]]
            givens = {(r, c): v for r, c, v in meta["givens"]}
            sols = latin_solutions(n, givens, constraints, limit=3, budget=10**6)
            assert sols == [parse_int_grid(item["answer"], n, n)], name


def test_binary_grid_puzzles_have_one_solution():
    one = lambda vals: vals.count(2) <= 1 <= vals.count(2) + vals.count(0)  # noqa: E731
    cells = [(r, c) for r in range(2) for c in range(2)]
    rows = [([(r, 0), (r, 1)], one) for r in range(2)]
    assert len(grid_solutions(cells, [1, 2], {}, rows, limit=10)) == 4  # one star per row: 2 x 2
    assert len(grid_solutions(cells, [1, 2], {(0, 0): 2}, rows, limit=10)) == 2
    for task, make in ((StarPlacement, lambda m: StarPlacement._constraints(m["n"], m["region"])),
                       (Norinori, lambda m: Norinori._constraints(
                           m["n"], m["region"], max(map(max, m["region"])) + 1))):
        for item in TASKS[task.name].generate(2, seed=5, difficulty=3):
            meta, n = item["metadata"], item["metadata"]["n"]
            cells = [(r, c) for r in range(n) for c in range(n)]
            givens = {(r, c): v + 1 for r, c, v in meta["known"]}
            sols = grid_solutions(cells, [1, 2], givens, make(meta), limit=3, budget=10**6)
            on = "*" if task is StarPlacement else "#"
            want = [ch for ch in item["answer"] if ch in on + "."]
            assert [[("*#"[on == "#"] if s[cell] == 2 else ".") for cell in cells] for s in sols] == [want]
    for item in TASKS["binairo"].generate(2, seed=5, difficulty=3):
        n = item["metadata"]["n"]
        cells = [(r, c) for r in range(n) for c in range(n)]
        givens = {(r, c): v + 1 for r, c, v in item["metadata"]["givens"]}
        sols = grid_solutions(cells, [1, 2], givens, Binairo._constraints(n), limit=3, budget=10**6)
        assert [[s[cell] - 1 for cell in cells] for s in sols] == [parse_ints(item["answer"])]


def test_survo_and_minesweeper_have_one_solution():
    for item in TASKS["survo"].generate(2, seed=5, difficulty=5):
        meta = item["metadata"]
        (m, n), givens = meta["shape"], {(r, c): v for r, c, v in meta["givens"]}
        cells = [(r, c) for r in range(m) for c in range(n)]
        missing = sorted(set(range(1, m * n + 1)) - set(givens.values()))
        sols = grid_solutions(cells, missing, givens, Survo._constraints(m, n, meta["rows"], meta["cols"]),
                              limit=3, budget=10**6)
        assert [[s[cell] for cell in cells] for s in sols] == [parse_ints(item["answer"])]
    for item in TASKS["minesweeper"].generate(2, seed=5, difficulty=4):
        meta, n = item["metadata"], item["metadata"]["n"]
        shown = {(r, c): v for r, c, v in meta["revealed"]}
        unknown = sorted((r, c) for r in range(n) for c in range(n) if (r, c) not in shown)
        exactly = lambda k: lambda vals: vals.count(2) <= k <= vals.count(2) + vals.count(0)  # noqa: E731
        constraints = [(unknown, exactly(meta["mines"]))]
        for (r, c), v in shown.items():
            near = [(rr, cc) for rr in range(r - 1, r + 2) for cc in range(c - 1, c + 2)
                    if (rr, cc) in set(unknown)]
            constraints.append((near, exactly(v)))
        sols = grid_solutions(unknown, [1, 2], {}, constraints, limit=3, budget=10**6)
        assert len(sols) == 1
        mines = sorted((r + 1, c + 1) for (r, c), v in sols[0].items() if v == 2)
        assert mines == parse_coords(item["answer"])


def test_numbrix_has_one_solution():
    # directed Hamiltonian paths: 8 on the 2x2 grid, 40 on the 3x3 grid
    assert len(numbrix_solutions(2, {}, limit=100, budget=10**6)) == 8
    assert len(numbrix_solutions(3, {}, limit=100, budget=10**6)) == 40
    for item in TASKS["numbrix"].generate(2, seed=5, difficulty=4):
        n = item["metadata"]["n"]
        sols = numbrix_solutions(n, {(r, c): v for r, c, v in item["metadata"]["givens"]},
                                 limit=3, budget=10**6)
        assert [[s[(r, c)] for r in range(n) for c in range(n)] for s in sols] == [parse_ints(item["answer"])]


def test_campsite_has_one_solution():
    for item in TASKS["campsite"].generate(3, seed=5, difficulty=4):
        meta, n = item["metadata"], item["metadata"]["n"]
        trees = [tuple(t) for t in meta["trees"]]
        spots = sorted({(r + dr, c + dc) for r, c in trees for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))
                        if 0 <= r + dr < n and 0 <= c + dc < n} - set(trees))
        givens = {(r, c): v + 1 for r, c, v in meta["known"]}
        sols = grid_solutions(spots, [1, 2], givens,
                              Campsite._constraints(n, trees, spots, meta["rows"], meta["cols"]),
                              limit=3, budget=10**6)
        grid = [row.replace(" ", "") for row in item["answer"].splitlines()]
        assert [{x: v for x, v in sol.items()} for sol in sols] == [
            {(r, c): 2 if grid[r][c] == "C" else 1 for r, c in spots}]


def test_line_logic_puzzles_are_determined_by_their_clues():
    assert _placements([2, 1], 5) == [(True, True, False, True, False), (True, True, False, False, True),
                                      (False, True, True, False, True)]
    assert _placements([], 3) == [(False, False, False)]
    for name in ("kakurasu", "nonogram"):
        for item in TASKS[name].generate(3, seed=5, difficulty=4):
            meta, n = item["metadata"], item["metadata"]["n"]
            if name == "nonogram":
                lines = [([(r, c) for c in range(n)], _placements(meta["rows"][r], n)) for r in range(n)]
                lines += [([(r, c) for r in range(n)], _placements(meta["cols"][c], n)) for c in range(n)]
            else:
                fill = lambda clue: [f for f in itertools.product((False, True), repeat=n)  # noqa: E731
                                     if sum(i + 1 for i, on in enumerate(f) if on) == clue]
                lines = [([(r, c) for c in range(n)], fill(meta["rows"][r])) for r in range(n)]
                lines += [([(r, c) for r in range(n)], fill(meta["cols"][c])) for c in range(n)]
            known = _line_solve(lines, {(r, c): bool(v) for r, c, v in meta["known"]})
            grid = [row.replace(" ", "") for row in item["answer"].splitlines()]
            assert known == {(r, c): grid[r][c] == "#" for r in range(n) for c in range(n)}


def test_game_of_24_evaluates_safely():
    game = TASKS["game_of_24"]
    item = _item("game_of_24", "(8 - 4) * (7 - 1)", numbers=[8, 4, 7, 1], target=24)
    assert game.verify(item, wrap("(8-4)*(7-1)")) == 1.0
    assert game.verify(item, wrap("8*4-7-1 = 24")) == 1.0
    assert game.verify(item, wrap("(7 - 1) × (8 - 4)")) == 1.0
    assert game.verify(item, wrap("8*4-7+1")) == 0.0  # 26
    assert game.verify(item, wrap("(8-4)*(7-1)*1")) == 0.0  # uses 1 twice
    assert game.verify(item, wrap("4**2+8")) == 0.0  # power is not allowed
    assert game.verify(item, wrap("__import__('os').getcwd()")) == 0.0
    assert game.verify(item, wrap("8/(4-4)")) == 0.0
    assert evaluate_expression("1/3 + 2/3") == (1, [1, 3, 2, 3])
    with pytest.raises(ValueError):
        evaluate_expression("len('abc')")


def test_minesweeper_accepts_any_consistent_mine_set():
    mines = TASKS["minesweeper"]
    # 1 x 3 row "? 1 ?": one mine, either end satisfies the clue
    item = _item("minesweeper", "(1,1)", n=3, mines=1, revealed=[[0, 1, 1]])
    assert mines.verify(item, wrap("(1,1)")) == 1.0
    assert mines.verify(item, wrap("(1,3)")) == 1.0
    assert mines.verify(item, wrap("(1,2)")) == 0.0  # on a revealed cell
    assert mines.verify(item, wrap("(1,1), (1,3)")) == 0.0  # two mines
    assert parse_coords("(1, 2),(10,3)") == [(1, 2), (10, 3)]


def test_maze_accepts_any_shortest_path_only():
    grid = ["#####", "#S..#", "#.#.#", "#..G#", "#####"]
    item = _item("maze", "RRDD", grid=grid, length=4)
    assert TASKS["maze"].verify(item, wrap("DDRR")) == 1.0
    assert TASKS["maze"].verify(item, wrap("R R D D")) == 1.0
    assert TASKS["maze"].verify(item, wrap("RDRD")) == 0.0  # walks into the wall at (2, 2)
    assert TASKS["maze"].verify(item, wrap("RRDDLR")) == 0.0  # not shortest


def test_arrow_maze_counts_rays_and_needs_every_arrow_on_one():
    item = _item("arrow_maze", board=[["3", "X"], ["X", "X"]])
    arrow = TASKS["arrow_maze"]
    assert arrow.verify(item, wrap("3 →\n↓ ↘")) == 1.0  # three rays of length 1
    assert arrow.verify(item, wrap("3 →\n↓ ↓")) == 0.0  # (2, 2) on no ray; total 2
    assert arrow.verify(item, wrap("3 ←\n↓ ↘")) == 0.0  # (1, 2) points back at the number
    assert arrow.verify(item, wrap("2 →\n↓ ↘")) == 0.0  # the number must stay
    line = _item("arrow_maze", board=[["2", "X", "X"]])
    assert arrow.verify(line, wrap("2 → →")) == 1.0 and arrow.verify(line, wrap("2 → ←")) == 0.0


def test_graph_colouring_accepts_renamed_colours():
    item = _item("graph_coloring", "1 2 3", n=3, k=3, edges=[[1, 2], [2, 3], [1, 3]])
    assert TASKS["graph_coloring"].verify(item, wrap("3 1 2")) == 1.0
    assert TASKS["graph_coloring"].verify(item, wrap("1 2 1")) == 0.0
    assert TASKS["graph_coloring"].verify(item, wrap("1 2 4")) == 0.0  # only 3 colours


def test_campsite_needs_one_tree_per_tent():
    assert _has_perfect_matching([(0, 0), (2, 0)], [(1, 0), (3, 0)])
    assert not _has_perfect_matching([(0, 0), (2, 0)], [(1, 0), (1, 5)])  # both want (1, 0)
    assert not _has_perfect_matching([(0, 0)], [(1, 0), (3, 0)])


def test_unique_answer_families_compare_canonical_text():
    knights = TASKS["knights_knaves"]
    item = _item("knights_knaves", "Alice: knight, Bob: knave")
    assert knights.verify(item, wrap("bob: KNAVE\nalice: knight")) == 1.0
    assert knights.verify(item, wrap("Alice: knight, Bob: knight")) == 0.0
    dyck = _item("dyck_languages", "} ] )")
    assert TASKS["dyck_languages"].verify(dyck, wrap("}])")) == 1.0
    assert TASKS["dyck_languages"].verify(dyck, wrap("} ) ]")) == 0.0
    web = _item("web_of_lies", "yes, no")
    assert TASKS["web_of_lies"].verify(web, wrap("Yes, No.")) == 1.0
    assert TASKS["web_of_lies"].verify(web, wrap("no, yes")) == 0.0


def test_object_properties_counts_never_go_negative():
    # taking one of a thing away twice must stop at zero (this sweep found -1 and -3 before)
    answers = [int(it["answer"]) for seed in range(500) for level in (3, 4, 5)
               for it in TASKS["object_properties"].generate(2, seed, level)]
    assert min(answers) >= 0


def test_clue_helpers_by_hand():
    assert _visible([2, 1, 3]) == 2 and _visible([4, 3, 2, 1]) == 1 and _visible([1, 2, 3, 4]) == 4
    assert _runs([1, 1, 0, 1, 0, 0, 1, 1, 1]) == [2, 1, 3] and _runs([0, 0]) == []
    assert parse_int_grid("1 2\n3 4", 2, 2) == [[1, 2], [3, 4]]
    with pytest.raises(ValueError):
        parse_int_grid("1 2 3", 2, 2)
    kakurasu = _item("kakurasu", n=2, rows=[2, 3], cols=[2, 3], known=[])
    # row 1 shades column 2 (worth 2); row 2 shades both (1 + 2); column 1: row 2 (2); column 2: 1 + 2
    assert TASKS["kakurasu"].verify(kakurasu, wrap(". #\n# #")) == 1.0
    assert TASKS["kakurasu"].verify(kakurasu, wrap("# .\n# #")) == 0.0
    kakurasu["metadata"]["known"] = [[0, 0, 1]]  # a revealed cell the grid must keep
    assert TASKS["kakurasu"].verify(kakurasu, wrap(". #\n# #")) == 0.0


def test_docs_table_lists_every_family():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "TASKS.md").read_text()
    for name in SYNLOGIC:
        lo, hi = TASKS[name].difficulty_range
        assert f"| `{name}` |" in doc and f"| {lo}-{hi} | {TASKS[name].knobs} |" in doc, name
