"""What the judge reads and writes: the two prompts and the parsing of its verdict (report 4.2.1).

The judge is a causal LM in the project's chat format; it answers a judging prompt with a short
rationale and a verdict, ``<think>148 vs 148: same</think><answer>5</answer>``. Code parses the
verdict (the one ``<answer>`` tag); anything else is *malformed* and is counted, never scored:

- grade mode (a ground truth exists): ``grade_prompt(question, reference, response)``; the verdict
  is a grade 1-5 of agreement (``tasks.envs.genrm.world.GRADES``);
- pairwise mode (no ground truth): ``pair_prompt(question, first, second)``; the verdict is 1, 0 or
  -1: the first answer is better than, similar to or worse than the second.

    parse_grade("<answer>4</answer>")   # Verdict(value=4, error=None)
    parse_pair("<answer>maybe</answer>")  # Verdict(value=None, error="not one of -1, 0, 1: 'maybe'")
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.envs.base import extract_answer

GRADE_VALUES = (1, 2, 3, 4, 5)
PAIR_VALUES = (-1, 0, 1)

_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_INT = re.compile(r"[+-]?\d+")


def grade_prompt(question: str, reference: str, response: str) -> str:
    """The grade-mode prompt: how far the response's final answer agrees with the reference. The
    response's final answer is quoted again, then the reference, next to the judge's reply: a small
    model (ours has one softmax layer in eight) compares nearby tokens far more easily than tokens a
    whole response apart, and the comparison is the judge's job, not finding the answer."""
    final = extract_answer(response)
    return (f"Grade 1-5 how well the response agrees with the reference.\nQuestion: {question}\n"
            f"Response: {response}\nFinal answer: {'(none)' if final is None else final}\nReference: {reference}")


def pair_prompt(question: str, first: str, second: str) -> str:
    """The pairwise prompt: is answer A better (1), similar (0) or worse (-1) than answer B."""
    return f"Is A better (1), similar (0) or worse (-1) than B?\nQuestion: {question}\nA: {first}\nB: {second}"


def verdict_reply(value: int, rationale: str) -> str:
    """The judge's reply: a short rationale, then the verdict (what it is trained to write)."""
    return f"<think>{rationale}</think><answer>{value}</answer>"


@dataclass(frozen=True)
class Verdict:
    """A parsed verdict: ``value`` or, when the reply was malformed, ``error`` (value None)."""

    value: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _parse(text: str, allowed: tuple[int, ...]) -> Verdict:
    text = text.replace("<|im_end|>", "").strip()
    found = _TAG.findall(text)
    if not found:
        return Verdict(None, f"no <answer> verdict in {text[:40]!r}")
    if len(found) > 1:
        return Verdict(None, f"{len(found)} verdicts")
    body = found[0].strip()
    if not _INT.fullmatch(body):
        return Verdict(None, f"not one of {', '.join(map(str, allowed))}: {body[:20]!r}")
    value = int(body)
    if value not in allowed:
        return Verdict(None, f"out of range {allowed[0]}..{allowed[-1]}: {value}")
    return Verdict(value)


def parse_grade(text: str) -> Verdict:
    """A grade-mode reply's verdict: an integer 1-5 inside one ``<answer>`` tag."""
    return _parse(text, GRADE_VALUES)


def parse_pair(text: str) -> Verdict:
    """A pairwise reply's verdict: -1, 0 or 1 inside one ``<answer>`` tag."""
    return _parse(text, PAIR_VALUES)


def grade_reward(grade: int) -> float:
    """A grade as a reward in [0, 1]: (grade - 1) / 4."""
    return (grade - 1) / 4


@dataclass(frozen=True)
class PairResult:
    """A response judged against a reference in both positions (report: position-switched
    consistent judgment). ``forward`` is the verdict with the response first, ``backward`` with it
    second. The pair counts only when both parsed and ``forward == -backward``; then ``value`` is
    the response's verdict, else None."""

    forward: Verdict
    backward: Verdict

    @property
    def malformed(self) -> bool:
        return not (self.forward.ok and self.backward.ok)

    @property
    def consistent(self) -> bool:
        return not self.malformed and self.forward.value == -self.backward.value

    @property
    def value(self) -> int | None:
        return self.forward.value if self.consistent else None
