"""Question/answer extraction from raw documents and final answers from reference solutions.

Shapes recognised in a ``question`` whose ``answer`` is empty:

- forum: ``Question: ... Answer: ...``, ``Q: ... A: ...``, ``**Question** ... **Answer** ...``
- textbook: ``Problem 3.2. ... Solution. ...``, ``Exercise 4: ... Answer: ...``, ``Example ... Solution ...``

The answer part, and any long ``answer`` that is a worked solution, is reduced to its final answer:
the last ``\\boxed{...}`` (braces balanced), else a closing ``Answer: X`` / ``the answer is X`` /
``#### X`` (GSM8K style) line. The worked solution is kept in ``solution``.
"""

from __future__ import annotations

import re

_LABEL = r"(?:\*\*|#+\s*)?"
_SPLITS = [
    re.compile(
        rf"^\s*{_LABEL}(?:question|q)\s*(?:\d+)?\s*[:.)]\s*(?:\*\*)?\s*(?P<q>.+?)\s*{_LABEL}\b(?:answer|a|ans)\s*[:.)]\s*(?:\*\*)?\s*(?P<a>.+)$",
        re.S | re.I,
    ),
    re.compile(
        rf"^\s*{_LABEL}(?:problem|exercise|example|question)\s*[\d.]*\s*[:.)]?\s*(?:\*\*)?\s*(?P<q>.+?)\s*{_LABEL}\b(?:solution|answer|proof)\s*[:.]\s*(?:\*\*)?\s*(?P<a>.+)$",
        re.S | re.I,
    ),
]
_FINAL = [
    re.compile(r"(?:^|\n)\s*#{4}\s*(?P<x>[^\n]+?)\s*$"),
    re.compile(r"(?:final answer|the answer is|answer\s*:|ans\s*:)\s*(?:is\s*)?(?P<x>[^\n]+?)\s*\.?\s*$", re.I),
]


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with nested braces, None if none closes."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
    return None


def final_answer(solution: str) -> str | None:
    """The final answer a worked solution states, or None when it states none recognisably."""
    boxed = last_boxed(solution)
    if boxed:
        return boxed
    tail = solution.strip()[-300:]
    for pat in _FINAL:
        m = pat.search(tail)
        if m:
            return m.group("x").strip().strip("$ ").rstrip(".") or None
    return None


def split_document(doc: str) -> tuple[str, str] | None:
    """(question, solution-or-answer) from a raw forum or textbook document, None if no shape matches."""
    for pat in _SPLITS:
        m = pat.match(doc)
        if m and m.group("q").strip() and m.group("a").strip():
            return m.group("q").strip(), m.group("a").strip()
    return None


def extract(question: str, answer: str, long_answer_chars: int) -> tuple[str, str, str | None] | None:
    """(question, final answer, worked solution or None) for a row that needs extraction, else None.

    A row needs it when its answer is empty and the question is a raw document, or when its answer is
    a worked solution (longer than ``long_answer_chars`` or holding ``\\boxed``) with a final answer in it.
    """
    if not answer.strip():
        parts = split_document(question)
        if parts is None:
            return None
        q, body = parts
        if len(body) <= long_answer_chars and "\\boxed" not in body:
            return q, body.strip().rstrip("."), None
        final = final_answer(body)
        return (q, final, body) if final else None
    if len(answer) > long_answer_chars or "\\boxed" in answer:
        final = final_answer(answer)
        if final:
            return question, final, answer
    return None
