"""SynLogic: procedurally generated logic tasks with rule-based verifiers (report section 4.1).

Importing this package registers every family in the shared registry::

    from tasks.envs.synlogic import TASKS
    items = TASKS["sudoku"].generate(8, seed=0, difficulty=2)

docs/TASKS.md lists the families and their difficulty knobs.
"""

from tasks.envs.base import TASKS
from tasks.envs.synlogic import (arithmetic_games, ciphers, language, puzzles_grid,  # noqa: F401
                            puzzles_latin, puzzles_logic, puzzles_path)

__all__ = ["TASKS"]
