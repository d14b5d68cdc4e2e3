"""Deduction puzzles: Web of lies, Boolean expressions, Knights and knaves, Zebra puzzle,
Logical deduction (ordering), Graph colouring.

Puzzles whose answer must be unique (knights and knaves, zebra, ordering) add true clues about a
drawn solution until a brute-force solver finds exactly one; the others have an answer that is a
function of the question (web of lies, Boolean expressions) or are checked by rule (colouring:
any valid colouring).
"""

from __future__ import annotations

import itertools
import re

from tasks.envs.base import register
from tasks.envs.synlogic.base import ANSWER_TAGS, SynLogicTask, canon, level, parse_ints

NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
         "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil"]


def _yes_no(text: str) -> list[str]:
    return re.findall(r"\b(yes|no)\b", text.lower())


class WebOfLies(SynLogicTask):
    name = "web_of_lies"
    difficulty_range = (1, 5)
    knobs = "chain length 3-10, statements shuffled from level 3, people asked 1-3"
    _levels = [(3, 1, False), (5, 1, False), (6, 2, True), (8, 3, True), (10, 3, True)]

    def make(self, rng, difficulty):
        n, n_asked, shuffle = level(difficulty, self._levels)
        people = rng.sample(NAMES, n)
        truth = [rng.random() < 0.5]
        facts = [f"{people[0]} {'tells the truth' if truth[0] else 'lies'}."]
        for i in range(1, n):
            says_truthful = rng.random() < 0.5
            # i is honest exactly when its claim about i-1 is right
            truth.append(says_truthful == truth[i - 1])
            facts.append(f"{people[i]} says {people[i - 1]} "
                         f"{'tells the truth' if says_truthful else 'lies'}.")
        if shuffle:
            facts = [facts[0]] + rng.sample(facts[1:], n - 1)
        asked = sorted(rng.sample(range(n), n_asked))
        question = (f"{' '.join(facts)} Each person either always tells the truth or always lies. "
                    f"Does each of {', '.join(people[i] for i in asked)} tell the truth? Answer yes "
                    f"or no for each, in that order, separated by commas. {ANSWER_TAGS}")
        answer = ", ".join("yes" if truth[i] else "no" for i in asked)
        # worked solution: each person's truthfulness along the chain, first to last
        steps = ", ".join(f"{p} {'yes' if t else 'no'}" for p, t in zip(people, truth))
        return question, answer, {"solution": f"<think>{steps}</think><answer>{answer}</answer>"}

    def check(self, item, answer):
        return float(_yes_no(answer) == _yes_no(item["answer"]))


class BooleanExpressions(SynLogicTask):
    name = "boolean_expressions"
    difficulty_range = (1, 5)
    knobs = "expression depth 2-6 (True or False: a guess is right half the time)"
    _levels = [2, 3, 4, 5, 6]

    def make(self, rng, difficulty):
        steps: list[str] = []
        text, value = self._expr(rng, level(difficulty, self._levels), steps)
        question = (f"Evaluate the Boolean expression: {text}\n"
                    f"Answer True or False. {ANSWER_TAGS}")
        # worked solution: every operator evaluated innermost first, left to right
        return question, str(value), {"solution": f"<think>{'; '.join(steps)}</think><answer>{value}</answer>"}

    def _expr(self, rng, depth, steps: list[str]):
        """``(text, value)`` of a random expression; appends each operator's evaluation to ``steps``."""
        if depth == 0 or rng.random() < 0.2:
            value = rng.random() < 0.5
            if rng.random() < 0.3:
                steps.append(f"not {value}={not value}")
                return f"not {value}", not value
            return str(value), value
        left, lv = self._expr(rng, depth - 1, steps)
        right, rv = self._expr(rng, depth - 1, steps)
        op = rng.choice(["and", "or"])
        value = (lv and rv) if op == "and" else (lv or rv)
        steps.append(f"{lv} {op} {rv}={value}")
        if rng.random() < 0.25:
            steps.append(f"not {value}={not value}")
            return f"not ({left} {op} {right})", not value
        return f"({left} {op} {right})", value


class KnightsAndKnaves(SynLogicTask):
    name = "knights_knaves"
    difficulty_range = (1, 5)
    knobs = "islanders 2-6 (each says one sentence about others)"
    _levels = [2, 3, 4, 5, 6]

    def make(self, rng, difficulty):
        n = level(difficulty, self._levels)
        people = rng.sample(NAMES, n)
        while True:
            roles = [rng.random() < 0.5 for _ in range(n)]  # True: knight
            claims = [self._claim(rng, i, n, roles) for i in range(n)]
            worlds = [w for w in itertools.product((True, False), repeat=n)
                      if all(w[i] == self._holds(claims[i], w) for i in range(n))]
            if len(worlds) == 1:
                break
        said = " ".join(f"{people[i]} says: \"{self._say(claims[i], people)}\"" for i in range(n))
        question = (f"On an island, knights always tell the truth and knaves always lie. You meet "
                    f"{', '.join(people)}. {said}\n"
                    f"Who is a knight and who is a knave? Answer as 'Name: knight' or 'Name: "
                    f"knave' for every islander, separated by commas, in the order they were "
                    f"introduced. {ANSWER_TAGS}")
        answer = ", ".join(f"{p}: {'knight' if r else 'knave'}" for p, r in zip(people, roles))
        return question, answer, {"people": people}

    @staticmethod
    def _holds(claim, world):
        kind, a, b, role = claim
        if kind == "is":
            return world[a] == role
        if kind == "both":
            return world[a] == role and world[b] == role
        if kind == "either":
            return world[a] == role or world[b] == role
        return world[a] == world[b]  # "same"

    def _claim(self, rng, speaker, n, roles):
        others = [j for j in range(n) if j != speaker] or [speaker]
        while True:
            kind = rng.choice(["is", "is", "both", "either", "same"] if n > 2 else ["is", "same"])
            a = rng.choice(others)
            b = rng.choice([j for j in range(n) if j != a])
            claim = (kind, a, b, rng.random() < 0.5)
            if self._holds(claim, roles) == roles[speaker]:
                return claim

    @staticmethod
    def _say(claim, people):
        kind, a, b, role = claim
        word = "a knight" if role else "a knave"
        if kind == "is":
            return f"{people[a]} is {word}."
        if kind == "both":
            return f"{people[a]} and {people[b]} are both {'knights' if role else 'knaves'}."
        if kind == "either":
            return f"{people[a]} is {word} or {people[b]} is {word}."
        return f"{people[a]} and {people[b]} are the same kind."

    def check(self, item, answer):
        want = dict(re.findall(r"(\w+)\s*:\s*(knight|knave)", item["answer"]))
        got = dict(re.findall(r"(\w+)\s*:\s*(knight|knave)", answer.lower()))
        return float({k.lower(): v for k, v in want.items()} == got)


_ZEBRA = {
    "colour": ["red", "green", "blue", "yellow", "white"],
    "pet": ["dog", "cat", "bird", "fish", "horse"],
    "drink": ["tea", "coffee", "milk", "juice", "water"],
    "job": ["doctor", "teacher", "pilot", "chef", "artist"],
}


class ZebraPuzzle(SynLogicTask):
    name = "zebra_puzzle"
    difficulty_range = (1, 5)
    knobs = "houses x attributes: 3x2, 3x3, 4x2, 4x3, 5x2"
    _levels = [(3, 2), (3, 3), (4, 2), (4, 3), (5, 2)]

    def make(self, rng, difficulty):
        n, m = level(difficulty, self._levels)
        attrs = rng.sample(sorted(_ZEBRA), m)
        values = {a: rng.sample(_ZEBRA[a], n) for a in attrs}
        # where[a][v]: the house (0-based) of value v of attribute a
        truth = tuple(tuple(rng.sample(range(n), n)) for _ in attrs)
        worlds = list(itertools.product(itertools.permutations(range(n)), repeat=m))
        clues = []
        while len(worlds) > 1:
            text, test = self._clue(rng, n, m, attrs, values, truth)
            kept = [w for w in worlds if test(w)]
            if len(kept) < len(worlds):
                clues.append(text)
                worlds = kept
        lines = "\n".join(f"{i + 1}. {c}" for i, c in enumerate(clues))
        options = "; ".join(f"{a}: {', '.join(values[a])}" for a in attrs)
        question = (f"{n} houses stand in a row, numbered 1 to {n} from left to right. Each house "
                    f"has a different value of each attribute ({options}).\n{lines}\n"
                    f"Give every house's attributes: one line per house in order, 'House k: ' then "
                    f"its {', '.join(attrs)} separated by commas. {ANSWER_TAGS}")
        table = [[values[a][truth[ai].index(h)] for ai, a in enumerate(attrs)] for h in range(n)]
        answer = "\n".join(f"House {h + 1}: {', '.join(row)}" for h, row in enumerate(table))
        return question, answer, {"houses": n}

    @staticmethod
    def _clue(rng, n, m, attrs, values, truth):
        a1, a2 = rng.randrange(m), rng.randrange(m)
        v1, v2 = rng.randrange(n), rng.randrange(n)
        h1, h2 = truth[a1][v1], truth[a2][v2]
        x, y = f"{attrs[a1]} {values[attrs[a1]][v1]}", f"{attrs[a2]} {values[attrs[a2]][v2]}"
        kind = rng.choice(["at", "not_at", "same", "left", "next", "before"])
        if kind == "at":
            return f"House {h1 + 1} has {x}.", lambda w: w[a1][v1] == h1
        if kind == "not_at":
            k = rng.choice([h for h in range(n) if h != h1])
            return f"House {k + 1} does not have {x}.", lambda w: w[a1][v1] != k
        if (a1, v1) == (a2, v2):
            return f"House {h1 + 1} has {x}.", lambda w: w[a1][v1] == h1
        if h1 == h2 and a1 != a2:
            return f"The house with {x} has {y}.", lambda w: w[a1][v1] == w[a2][v2]
        if h1 == h2 - 1:
            return (f"The house with {x} is directly left of the house with {y}.",
                    lambda w: w[a1][v1] == w[a2][v2] - 1)
        if abs(h1 - h2) == 1:
            return (f"The house with {x} is next to the house with {y}.",
                    lambda w: abs(w[a1][v1] - w[a2][v2]) == 1)
        if h1 < h2:
            return (f"The house with {x} is somewhere left of the house with {y}.",
                    lambda w: w[a1][v1] < w[a2][v2])
        return f"House {h1 + 1} has {x}.", lambda w: w[a1][v1] == h1

    def check(self, item, answer):
        rows = lambda text: [[canon(v) for v in re.sub(r"(?i)^\s*house\s*\d+\s*:", "", line).split(",")]  # noqa: E731
                             for line in text.strip().splitlines() if line.strip()]
        return float(rows(answer) == rows(item["answer"]))


class LogicalDeduction(SynLogicTask):
    name = "logical_deduction"
    difficulty_range = (1, 5)
    knobs = "objects to order 3-7"
    _levels = [3, 4, 5, 6, 7]
    _things = ["apple", "book", "candle", "drum", "egg", "fork", "globe", "hat", "ink", "jar", "kite"]

    def make(self, rng, difficulty):
        n = level(difficulty, self._levels)
        things = rng.sample(self._things, n)
        order = rng.sample(things, n)  # left to right
        pos = {t: i for i, t in enumerate(order)}
        worlds = [dict(zip(p, range(n))) for p in itertools.permutations(things)]
        clues = []
        while len(worlds) > 1:
            a, b = rng.sample(things, 2)
            kind = rng.choice(["left", "left", "at", "ends"])
            if kind == "left" and pos[a] < pos[b]:
                text, test = f"The {a} is to the left of the {b}.", lambda w, a=a, b=b: w[a] < w[b]
            elif kind == "left":
                text, test = f"The {a} is to the right of the {b}.", lambda w, a=a, b=b: w[a] > w[b]
            elif kind == "ends" and pos[a] in (0, n - 1):
                side = "leftmost" if pos[a] == 0 else "rightmost"
                text, test = f"The {a} is the {side}.", lambda w, a=a, k=pos[a]: w[a] == k
            else:
                k = pos[a]
                text, test = (f"The {a} is number {k + 1} from the left.",
                              lambda w, a=a, k=k: w[a] == k)
            kept = [w for w in worlds if test(w)]
            if len(kept) < len(worlds):
                clues.append(text)
                worlds = kept
        question = (f"{n} objects ({', '.join(things)}) stand on a shelf in a row. "
                    f"{' '.join(clues)}\nList the objects from left to right, separated by commas. "
                    f"{ANSWER_TAGS}")
        return question, ", ".join(order), {}

    def check(self, item, answer):
        split = lambda text: [canon(t) for t in re.split(r"[,\n]", text) if t.strip()]  # noqa: E731
        return float(split(answer) == split(item["answer"]))


class GraphColouring(SynLogicTask):
    name = "graph_coloring"
    any_valid = True
    difficulty_range = (1, 5)
    knobs = "vertices 5-14, colours 3 or 4, edge density"
    _levels = [(5, 3, 0.5), (7, 3, 0.55), (9, 3, 0.6), (11, 4, 0.6), (14, 4, 0.65)]

    def make(self, rng, difficulty):
        n, k, p = level(difficulty, self._levels)
        colour = [i % k + 1 for i in range(n)]  # balanced classes leave room for many edges
        rng.shuffle(colour)
        edges = [[u + 1, v + 1] for u in range(n) for v in range(u + 1, n)
                 if colour[u] != colour[v] and rng.random() < p]
        question = (f"Colour the vertices 1-{n} of a graph with colours 1-{k} so that the two ends "
                    f"of every edge get different colours. Edges: "
                    f"{', '.join(f'{u}-{v}' for u, v in edges)}.\n"
                    f"Answer with the colours of vertices 1 to {n} in order, separated by spaces. "
                    f"{ANSWER_TAGS}")
        return question, " ".join(map(str, colour)), {"n": n, "k": k, "edges": edges}

    def check(self, item, answer):
        meta = item["metadata"]
        colour = parse_ints(answer)
        return float(len(colour) == meta["n"] and all(1 <= c <= meta["k"] for c in colour)
                     and all(colour[u - 1] != colour[v - 1] for u, v in meta["edges"]))


for _task in (WebOfLies(), BooleanExpressions(), KnightsAndKnaves(), ZebraPuzzle(),
              LogicalDeduction(), GraphColouring()):
    register(_task)
