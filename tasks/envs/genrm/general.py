"""General-domain tasks, verified by the generative judge (report section 4.2).

- ``open_prompt``: "tell me about bees." The reply's final answer is judged pairwise against the
  item's reference answer, in both positions; reward ``(verdict + 1) / 2`` (0, 0.5 or 1), counted
  only when the two positions agree.
- ``instruct``: the same prompts with rule-checkable constraints ("in at most 2 sentences", "use the
  word 'honey'", "end with '!'", "in capital letters"). Reward = ``rule_weight`` x the fraction of
  constraints met + ``(1 - rule_weight)`` x the judge's pairwise score against the reference.

Items carry ``metadata.candidates``: answers of mixed quality from several "sources" (the world's
reply writer at different quality tiers); an item's reference ``answer`` is the winner of a
Swiss-round tournament among them under the judge (``choose_references``; the ``genrm`` stage
writes a pool of such items for RL). A task needs a judge to score: bind one with
``task.with_judge(judge, general_params)`` (the RL stage's ``OnlineJudge`` does). ``judge_batch`` / ``verify_batch`` judge a whole batch in one call; a reply the judge did not score
(malformed or position-inconsistent verdicts) gets None, which the RL loop turns into a zero
advantage (``verify`` returns NaN). A reply without an ``<answer>`` tag scores 0 by rule and is not
judged.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any

from tasks.envs.base import Item, extract_answer, register
from tasks.envs.genrm.params import GeneralParams, SwissParams
from tasks.envs.genrm.swiss import judge_play, swiss
from tasks.envs.genrm.world import MAX_FACTS, TOPICS, quality, reply, sentences

_WORD = re.compile(r"[a-z']+")
_COMMON = {"the", "a", "an", "is", "are", "in", "of", "and", "to", "from", "at", "on", "can", "be", "it",
           "they", "their", "when", "most", "each", "very", "few", "often", "made", "needs", "need"}


def keywords(topic: str) -> list[str]:
    """Content words of a topic's facts other than the topic's own words (for "use the word ...")."""
    own = set(topic.split())
    words = {w for fact in TOPICS[topic] for w in _WORD.findall(fact)} - own - _COMMON
    return sorted(w for w in words if len(w) > 3)


CONSTRAINTS = ("sentences", "word", "exclaim", "capitals")


def constraint_text(kind: str, arg: Any) -> str:
    return {"sentences": f"in at most {arg} sentence{'s' if arg != 1 else ''}",
            "word": f"use the word '{arg}'", "exclaim": "end with '!'", "capitals": "in capital letters"}[kind]


def constraint_met(kind: str, arg: Any, answer: str) -> bool:
    """The rule for one constraint on a final answer."""
    if kind == "sentences":
        return 1 <= len(sentences(answer)) <= arg
    if kind == "word":
        return arg in _WORD.findall(answer.lower())
    if kind == "exclaim":
        return answer.rstrip().endswith("!")
    if kind == "capitals":
        return any(c.isalpha() for c in answer) and answer == answer.upper()
    raise ValueError(f"unknown constraint {kind!r}")


def satisfy(kind: str, arg: Any, answer: str, rng: random.Random, topic: str) -> str:
    """``answer`` rewritten to meet one constraint (used to write candidates that follow rules)."""
    if kind == "sentences":
        keep = [s for s in re.findall(r"[^.!?]+[.!?]", answer) if s.strip()][:arg]
        return " ".join(s.strip() for s in keep) or answer
    if kind == "word":
        if arg in _WORD.findall(answer.lower()):
            return answer
        fact = next(f for f in TOPICS[topic] if arg in _WORD.findall(f))
        return f"{fact}. {answer}"
    if kind == "exclaim":
        return answer.rstrip().rstrip(".!?") + "!"
    if kind == "capitals":
        return answer.upper()
    raise ValueError(f"unknown constraint {kind!r}")


@dataclass(frozen=True)
class Scored:
    """A general-task reply's score: ``reward`` (None: the judge gave no counted verdict), the
    fraction of constraints met (``rule``; None for tasks without rules or unjudged replies) and the
    judge's score in [0, 1] (``judge``; None when not judged or not counted)."""

    reward: float | None
    rule: float | None
    judge: float | None


def chat_reply(topic: str, answer: str) -> str:
    """A full reply in the chat format the verifiers read."""
    return f"<think>{topic}</think><answer>{answer}</answer>"


class _GeneralTask:
    """Shared parts: candidates, the judge binding, batched judging."""

    name = ""
    difficulty_range = (1, 1)

    def __init__(self, judge=None, params: GeneralParams | None = None):
        self.judge, self.params = judge, params or GeneralParams()

    def with_judge(self, judge, params: GeneralParams):
        """This task scored by ``judge`` with the reward settings ``params``."""
        return type(self)(judge, params)

    def _check(self, difficulty: int) -> None:
        lo, hi = self.difficulty_range
        if not lo <= difficulty <= hi:
            raise ValueError(f"{self.name}: difficulty {difficulty} outside [{lo}, {hi}]")

    def _candidates(self, rng: random.Random, topic: str, n: int, constraints) -> list[str]:
        """``n`` candidate answers of mixed quality: tiers 0..MAX_FACTS, some off-topic, some padded,
        some breaking the constraints (the "sources" a reference is chosen from)."""
        out = []
        for k in range(n):
            facts = k % (MAX_FACTS + 1)
            text = reply(rng, topic, facts, off_topic=int(rng.random() < 0.2), filler=rng.randint(0, 2),
                         repeats=int(rng.random() < 0.3))
            for kind, arg in constraints:
                if rng.random() < 0.7:
                    text = satisfy(kind, arg, text, rng, topic)
            out.append(text)
        rng.shuffle(out)
        return out

    def generate(self, n: int, seed: int, difficulty: int) -> list[Item]:
        """``n`` items; their references are chosen by a Swiss round when a judge is bound, else
        left empty (such items cannot be scored until ``choose_references`` fills them)."""
        self._check(difficulty)
        items = [self.make_item(random.Random(f"{self.name}|{seed}|{difficulty}|{i}"), f"{seed}-{i}", difficulty)
                 for i in range(n)]
        if self.judge is not None:
            choose_references(items, self.judge, SwissParams(), seed=seed)
        return items

    def make_item(self, rng: random.Random, key: str, difficulty: int) -> Item:
        raise NotImplementedError

    def rules(self, item: Item, answer: str) -> float | None:
        """Fraction of the item's constraints met (None: the task has none)."""
        return None

    def verify(self, item: Item, response: str) -> float:
        """One reply's reward; NaN when the judge did not score it (see ``verify_batch``)."""
        score = self.verify_batch([item], [response])[0]
        return math.nan if score is None else score

    def verify_batch(self, items: list[Item], responses: list[str]) -> list[float | None]:
        """Rewards of a batch, judged in one call; None where the judge gave no counted verdict."""
        return [s.reward for s in self.judge_batch(items, responses)]

    def combine(self, rule: float | None, judge: float) -> float:
        """The reward from the rule part (None: the task has no rules) and the judge's score."""
        return judge if rule is None else self.params.rule_weight * rule + (1 - self.params.rule_weight) * judge

    def judge_batch(self, items: list[Item], responses: list[str]) -> list[Scored]:
        """Each reply's rule part, judge score and reward; the replies with an answer are judged
        against their items' references in one ``Judge.against`` call (both positions)."""
        if self.judge is None:
            raise ValueError(f"task {self.name!r} is scored by the generative judge: bind one with "
                             f"task.with_judge(judge, genrm.general params) (the RL stage's OnlineJudge)")
        answers = [extract_answer(r) for r in responses]
        judged = [i for i, a in enumerate(answers) if a]
        for i in judged:
            if not items[i].get("answer"):
                raise ValueError(f"{self.name}: item {items[i]['id']} has no reference answer; choose one "
                                 "with tasks.envs.genrm.general.choose_references")
        results = self.judge.against([items[i]["question"] for i in judged], [answers[i] for i in judged],
                                     [items[i]["answer"] for i in judged])
        out = [Scored(0.0, None, None)] * len(responses)  # no final answer: 0 by rule, not judged
        for i, res in zip(judged, results):
            rule = self.rules(items[i], answers[i])
            if res.value is None:
                out[i] = Scored(None, rule, None)
            else:
                judge = (res.value + 1) / 2
                out[i] = Scored(self.combine(rule, judge), rule, judge)
        return out

    def oracle(self, item: Item, answer: str) -> float:
        """The annotator's quality of an answer (world facts, rules for instruct): evaluation only."""
        return float(quality(item["metadata"]["topic"], answer))


class OpenPromptTask(_GeneralTask):
    """"tell me about <topic>.", judged pairwise against the Swiss-round reference."""

    name = "open_prompt"

    def make_item(self, rng: random.Random, key: str, difficulty: int) -> Item:
        topic = rng.choice(sorted(TOPICS))
        cands = self._candidates(rng, topic, 8, [])
        best = max(cands, key=lambda a: (quality(topic, a), -len(a)))
        return {"id": f"{self.name}-{key}", "question": f"tell me about {topic}.", "answer": "",
                "difficulty": difficulty,
                "metadata": {"topic": topic, "candidates": cands, "solution": chat_reply(topic, best)}}


class InstructTask(_GeneralTask):
    """A prompt with ``difficulty`` rule-checkable constraints: rules and the judge score together."""

    name = "instruct"
    difficulty_range = (1, len(CONSTRAINTS))

    def make_item(self, rng: random.Random, key: str, difficulty: int) -> Item:
        topic = rng.choice(sorted(TOPICS))
        kinds = rng.sample(CONSTRAINTS, difficulty)
        constraints = [(k, rng.randint(1, 2) if k == "sentences" else rng.choice(keywords(topic)) if k == "word"
                        else None) for k in kinds]
        cands = self._candidates(rng, topic, 8, constraints)
        best = max(cands, key=lambda a: (self._met(constraints, a), quality(topic, a), -len(a)))
        text = f"write about {topic}, " + ", ".join(constraint_text(k, a) for k, a in constraints) + "."
        return {"id": f"{self.name}-{key}", "question": text, "answer": "", "difficulty": difficulty,
                "metadata": {"topic": topic, "constraints": [list(c) for c in constraints], "candidates": cands,
                             "solution": chat_reply(topic, best)}}

    @staticmethod
    def _met(constraints, answer: str) -> float:
        return sum(constraint_met(k, a, answer) for k, a in constraints) / len(constraints)

    def rules(self, item: Item, answer: str) -> float:
        return self._met([tuple(c) for c in item["metadata"]["constraints"]], answer)

    def oracle(self, item: Item, answer: str) -> float:
        return self.rules(item, answer) * (MAX_FACTS + 1) + quality(item["metadata"]["topic"], answer.lower())


def choose_references(items: list[Item], judge, params: SwissParams, seed: int = 0) -> list[Item]:
    """Each item's reference ``answer``: the Swiss-round winner of its candidates under ``judge``
    (instruct: among the candidates that meet every constraint, when any do). Writes the winner's
    index and score into ``metadata``; returns ``items``."""
    pools = []
    for it in items:
        cands = it["metadata"]["candidates"]
        cons = [tuple(c) for c in it["metadata"].get("constraints", [])]
        ok = [c for c in cands if all(constraint_met(k, a, c) for k, a in cons)] if cons else cands
        pools.append((ok or cands)[: params.candidates])
    result = swiss([len(p) for p in pools], judge_play(judge, [it["question"] for it in items], pools),
                   rounds=params.rounds, seed=seed)
    for it, pool, order, scores in zip(items, pools, result.order, result.scores):
        it["answer"] = pool[order[0]]
        it["metadata"]["reference_score"] = scores[order[0]]
    return items


OPEN_PROMPT = register(OpenPromptTask())
INSTRUCT = register(InstructTask())
