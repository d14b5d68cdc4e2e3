"""Multi-digit addition with worked column steps: a small verifiable task for SFT and RL on CPU.

Difficulty ``d`` is the number of digits of each operand. The worked solution adds columns right to
left, carry in and out written out, so a tiny model can learn the algorithm from a few thousand
examples and RL has a per-digit procedure to sharpen::

    question: "347+589="
    solution: "<think>7+9+0=16 4+8+1=13 3+5+1=9</think><answer>936</answer>"

Held-out split: seeds at or above ``HELD_OUT_SEED`` draw only from a fixed tenth of the operand
pairs (chosen by a hash of the pair), and all other seeds never draw from it, so training data (SFT,
RL prompts) and evaluation sets are disjoint even at small difficulties where pairs repeat.

Usage::

    from tasks.envs.base import TASKS
    import tasks.envs.arithmetic  # registers "arithmetic"
    items = TASKS["arithmetic"].generate(4, seed=0, difficulty=3)
"""

from __future__ import annotations

import random
import zlib

from tasks.envs.base import Item, extract_answer, register

HELD_OUT_SEED = 1_000_000


def is_held_out(a: int, b: int) -> bool:
    """The evaluation tenth of the operand pairs. A CRC, not a linear form: ``(p*a + q*b) % 10``
    would pick pairs by their digits (e.g. every pair whose units sum to 10) and skew both splits."""
    return zlib.crc32(f"{a}+{b}".encode()) % 10 == 0


def worked_solution(a: int, b: int) -> str:
    """The column-by-column reply for ``a + b`` in the chat reply format (think, then answer)."""
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        steps.append(f"{x}+{y}+{carry}={s}")
        carry = s // 10
    return f"<think>{' '.join(steps)}</think><answer>{a + b}</answer>"


class Arithmetic:
    """``a+b=`` with two ``difficulty``-digit operands; reward 1 when the final answer is the sum."""

    name = "arithmetic"
    difficulty_range = (1, 8)

    def generate(self, n: int, seed: int, difficulty: int) -> list[Item]:
        lo, hi = self.difficulty_range
        if not lo <= difficulty <= hi:
            raise ValueError(f"arithmetic difficulty must be in [{lo}, {hi}], got {difficulty}")
        rng = random.Random(f"arithmetic-{seed}-{difficulty}")
        smallest, largest = 10 ** (difficulty - 1), 10**difficulty - 1
        items = []
        held_out = seed >= HELD_OUT_SEED
        for i in range(n):
            a, b = rng.randint(smallest, largest), rng.randint(smallest, largest)
            while is_held_out(a, b) != held_out:
                a, b = rng.randint(smallest, largest), rng.randint(smallest, largest)
            items.append(
                {
                    "id": f"arithmetic-{difficulty}-{seed}-{i}",
                    "question": f"{a}+{b}=",
                    "answer": str(a + b),
                    "difficulty": difficulty,
                    "metadata": {"a": a, "b": b, "solution": worked_solution(a, b)},
                }
            )
        return items

    def verify(self, item: Item, response: str) -> float:
        got = extract_answer(response)
        if got is None:
            return 0.0
        got = got.replace(",", "").replace(" ", "")
        return 1.0 if got.isdigit() and int(got) == int(item["answer"]) else 0.0


register(Arithmetic())
