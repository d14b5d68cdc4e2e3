"""Swiss-round tournaments: the reference answer of an open prompt is the winner among its candidates
under the judge (report 4.2.1: "a Swiss Round scoring system ... to determine the most suitable
reference answer").

Each round pairs players of equal or nearest score who have not met (the lowest-ranked player
without a bye sits out with a bye when the count is odd and scores 1); a win scores 1, a draw 0.5. A
match the judge does not decide (inconsistent under position swap, or malformed) is a draw. The
final order is by score, then Buchholz (the sum of the opponents' scores), then the player's index.
``ceil(log2(n)) + 1`` rounds separate the top of ``n`` players with far fewer matches than a round
robin's ``n (n - 1) / 2``. Many tournaments (one per prompt) are played together, so each round is one
batched judging call.

    play = lambda matches: [1 if q[i] > q[j] else -1 if q[i] < q[j] else 0 for _, i, j in matches]
    swiss([4], play, rounds=3, seed=0).order[0]   # the best of the 4 players of tournament 0
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

#: ``play([(tournament, i, j), ...])`` -> per match 1 (i wins), 0 (draw), -1 (j wins) or None (undecided)
Play = Callable[[list[tuple[int, int, int]]], list[int | None]]


@dataclass
class SwissResult:
    scores: list[list[float]]  # [tournament][player]
    order: list[list[int]]  # players best first, per tournament
    matches: int  # matches played in all


def default_rounds(n: int) -> int:
    return math.ceil(math.log2(max(n, 2))) + 1


def _pairings(scores: list[float], met: set[tuple[int, int]], byes: set[int], rng: random.Random):
    """One round's pairs (and the bye, if any): players sorted by score (random tie order), each paired
    with the nearest-ranked player it has not met; a rematch only when nothing else is left."""
    ranked = sorted(range(len(scores)), key=lambda p: (-scores[p], rng.random()))
    bye = None
    if len(ranked) % 2:
        bye = next((p for p in reversed(ranked) if p not in byes), ranked[-1])
        ranked.remove(bye)
    pairs, free = [], list(ranked)
    while free:
        a = free.pop(0)
        b = next((q for q in free if (min(a, q), max(a, q)) not in met), free[0])
        free.remove(b)
        pairs.append((a, b))
    return pairs, bye


def swiss(sizes: list[int], play: Play, rounds: int = 0, seed: int = 0) -> SwissResult:
    """Play one tournament per entry of ``sizes`` (its player count), all rounds batched together."""
    rng = random.Random(seed)
    scores = [[0.0] * n for n in sizes]
    met: list[set[tuple[int, int]]] = [set() for _ in sizes]
    byes: list[set[int]] = [set() for _ in sizes]
    opponents: list[list[list[int]]] = [[[] for _ in range(n)] for n in sizes]
    matches = 0
    for _ in range(rounds or default_rounds(max(sizes, default=2))):
        batch = []
        for t, n in enumerate(sizes):
            if n < 2:
                continue
            pairs, bye = _pairings(scores[t], met[t], byes[t], rng)
            if bye is not None:
                scores[t][bye] += 1.0
                byes[t].add(bye)
            batch += [(t, a, b) for a, b in pairs]
        results = play(batch)
        if len(results) != len(batch):
            raise ValueError(f"swiss: play returned {len(results)} results for {len(batch)} matches")
        for (t, a, b), r in zip(batch, results):
            met[t].add((min(a, b), max(a, b)))
            opponents[t][a].append(b)
            opponents[t][b].append(a)
            win_a = 0.5 if r is None or r == 0 else (1.0 if r > 0 else 0.0)
            scores[t][a] += win_a
            scores[t][b] += 1.0 - win_a
        matches += len(batch)
    order = []
    for t, n in enumerate(sizes):
        buchholz = [sum(scores[t][o] for o in opponents[t][p]) for p in range(n)]
        order.append(sorted(range(n), key=lambda p: (-scores[t][p], -buchholz[p], p)))
    return SwissResult(scores, order, matches)


def judge_play(judge, questions: list[str], candidates: list[list[str]]) -> Play:
    """A ``Play`` that asks ``judge`` (``Judge.against``: both positions) about candidates of each
    tournament's question; an inconsistent or malformed verdict is None (a draw)."""

    def play(batch: list[tuple[int, int, int]]) -> list[int | None]:
        results = judge.against([questions[t] for t, _, _ in batch], [candidates[t][i] for t, i, _ in batch],
                                [candidates[t][j] for t, _, j in batch])
        return [r.value for r in results]

    return play
