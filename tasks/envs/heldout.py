"""The evaluation split shared by every task: a fixed tenth of all possible questions.

    from tasks.envs.heldout import is_held_out
    train = [it for it in items if not is_held_out(it["question"])]   # SFT examples, RL prompts
    test = [it for it in items if is_held_out(it["question"])]        # held-out evaluation items

A question is held out when the CRC-32 of its text (whitespace collapsed, lower case) falls in
the tenth ``crc % 10 == 0``. The split depends on nothing but the text, so stages that never see
each other's files agree on it: SFT drops held-out questions from what it imitates, ``rl_data``
from what RL trains on, and the held-out sets hold nothing else. Generated tasks repeat questions
(``7+8=`` recurs in any large enough sample); an identical question lands on the same side
wherever it is drawn. A CRC, not a linear form of the numbers: see ``tasks.envs.arithmetic``.
"""

from __future__ import annotations

import zlib


def split_key(question: str) -> str:
    """The text the split hashes: whitespace collapsed, lower case."""
    return " ".join(question.split()).lower()


def is_held_out(question: str) -> bool:
    """True for the evaluation tenth of questions."""
    return zlib.crc32(split_key(question).encode("utf-8")) % 10 == 0
