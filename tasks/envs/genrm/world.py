"""The labelled material the judge learns from and is measured on: replies whose quality is known.

The report's GenRM is trained and benchmarked on human-annotated pairs (section 4.2.1). This
project has no annotators, so it writes replies whose quality a rule knows: that rule plays the
annotator, the judge never sees it, and RL sees only the judge.

- Answers to verifiable items (``arithmetic``, ``math``): the same value as the reference, a near
  miss, a wrong value or none, each written plainly, in another form (number words, ``85.0``,
  ``1,085``, ``3/4`` for ``\\frac{3}{4}``), with extra words or hedged beside a second value: each
  has a five-grade label (``GRADES``) and the rationale a judge should write before it.
- General replies in a small world of topics, each with a handful of true sentences ("facts"). A
  reply's quality is the number of distinct facts of the asked topic it states (at most
  ``MAX_FACTS``) minus the off-topic ones; filler ("well, let me think.") and repeated facts add
  length and nothing else. ``pad`` makes a longer reply of the same quality. A judge's rationale
  for a pair is the two qualities, ``"A 2, B 3"``.

Usage::

    from tasks.envs.genrm.world import reply, quality, pad
    text = reply(rng, "cats", facts=2)          # "cats purr when they are happy. cats chase mice."
    quality("cats", text)                       # 2
    quality("cats", pad(rng, "cats", text, 3))  # still 2
"""

from __future__ import annotations

import random
import re

#: Five grades of agreement between a response's final answer and the reference (report 4.2.1).
GRADES = {
    5: "the same value as the reference, in any equivalent form",
    4: "the same value, with extra words or units around it",
    3: "hedged: the reference's value offered beside another value",
    2: "a near miss: a different value that differs in one digit",
    1: "a different value (also hedged between wrong values), or no final answer",
}

MAX_FACTS = 3

TOPICS: dict[str, list[str]] = {
    "cats": ["cats purr when they are happy", "cats chase mice", "cats sleep most of the day",
             "cats clean their fur", "cats like warm places"],
    "rain": ["rain falls from clouds", "rain fills the rivers", "rain helps plants grow",
             "rain makes the streets wet", "rain comes often in spring"],
    "bread": ["bread is made from flour", "bread needs yeast to rise", "bread is baked in an oven",
              "bread goes stale in a few days", "bread is eaten at breakfast"],
    "trains": ["trains run on rails", "trains carry people and goods", "trains stop at stations",
               "trains can be very fast", "trains follow a timetable"],
    "bees": ["bees make honey", "bees visit flowers", "bees live in hives",
             "bees carry pollen", "bees can sting"],
    "the moon": ["the moon goes around the earth", "the moon has craters", "the moon lights the night",
                 "the moon changes shape each week", "the moon pulls the tides"],
    "winter": ["winter is the coldest season", "winter brings snow", "winter days are short",
               "winter needs warm coats", "winter ends when spring comes"],
    "gardens": ["gardens need water", "gardens grow vegetables", "gardens attract birds",
                "gardens need weeding", "gardens bloom in summer"],
}

FILLER = ["well, let me think.", "this is a good question.", "in other words, as i said.",
          "i hope this helps.", "to be honest, it is simple.", "let me say it again.", "that is all."]

_SENT = re.compile(r"[^.!?]+[.!?]?")


def sentences(text: str) -> list[str]:
    """The sentences of a reply, stripped, without their end marks, lowercase."""
    return [s.strip().rstrip(".!?").strip().lower() for s in _SENT.findall(text) if s.strip().rstrip(".!?").strip()]


def quality(topic: str, text: str) -> int:
    """The annotator's score of a reply about ``topic``: distinct facts of the topic (at most
    ``MAX_FACTS``) minus facts of other topics, never below 0. Filler and repeats count nothing."""
    said = set(sentences(text))
    on = len(said & set(TOPICS[topic]))
    off = sum(len(said & set(facts)) for t, facts in TOPICS.items() if t != topic)
    return max(0, min(on, MAX_FACTS) - off)


def _join(parts: list[str]) -> str:
    return " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts)


def reply(rng: random.Random, topic: str, facts: int, *, off_topic: int = 0, filler: int = 0,
          repeats: int = 0) -> str:
    """A reply stating ``facts`` distinct facts of ``topic``, ``off_topic`` facts of other topics,
    ``filler`` filler sentences and ``repeats`` repeated facts, in a random order (facts first)."""
    own = rng.sample(TOPICS[topic], facts)
    others = [f for t, fs in TOPICS.items() if t != topic for f in fs]
    parts = own + rng.sample(others, off_topic)
    parts += [rng.choice(own) for _ in range(repeats if own else 0)]
    rng.shuffle(parts)
    for _ in range(filler):
        parts.insert(rng.randint(0, len(parts)), rng.choice(FILLER))
    return _join(parts) if parts else rng.choice(FILLER)


def pad(rng: random.Random, topic: str, text: str, extra: int) -> str:
    """``text`` made ``extra`` sentences longer at the same quality: filler, or a repeat of a fact
    it already states."""
    parts = [s for s in _SENT.findall(text) if s.strip()]
    stated = [s.strip() for s in parts if s.strip().rstrip(".!?").lower() in TOPICS[topic]]
    for _ in range(extra):
        add = rng.choice(stated) if stated and rng.random() < 0.5 else rng.choice(FILLER)
        parts.insert(rng.randint(0, len(parts)), add)
    return _join([p.strip() for p in parts])


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """``185`` -> ``"one hundred eighty-five"`` (0 <= n < 1,000,000)."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words: {n} out of range")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def equivalent_forms(answer: str) -> list[str]:
    """Other ways to write the value of a reference answer (an integer or a LaTeX fraction) that a
    strict rule checker would miss: number words, a decimal point, a thousands separator, a plain
    slash or a decimal for a fraction."""
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", answer)
    if m:
        sign, p, q = m.group(1), int(m.group(2)), int(m.group(3))
        forms = [f"{sign}{p}/{q}"]
        if len(str(p / q)) <= 6:
            forms.append(f"{sign}{p / q:g}")
        return forms
    if re.fullmatch(r"-?\d+", answer):
        n = int(answer)
        forms = [f"{n}.0", number_words(abs(n)) if n >= 0 else f"minus {number_words(-n)}"]
        if abs(n) >= 1000:
            forms.append(f"{n:,}")
        return forms
    return []


def near_miss(rng: random.Random, answer: str) -> str | None:
    """An integer answer with one digit changed (a carry slip); None for other answers."""
    if not re.fullmatch(r"-?\d+", answer):
        return None
    digits = list(answer.lstrip("-"))
    i = rng.randrange(len(digits))
    choices = [d for d in "0123456789" if d != digits[i] and not (i == 0 and d == "0" and len(digits) > 1)]
    digits[i] = rng.choice(choices)
    return ("-" if answer.startswith("-") else "") + "".join(digits)


def wrong_value(rng: random.Random, answer: str) -> str:
    """A clearly different answer: an integer that differs from ``answer`` in at least two digits
    (zero-padded), or a random integer for a non-integer answer."""
    frac = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", answer)
    if frac:
        p, q = int(frac.group(2)), int(frac.group(3))
        return f"{frac.group(1)}\\frac{{{rng.choice([k for k in range(1, 3 * q) if k != p])}}}{{{q}}}"
    if not re.fullmatch(r"-?\d+", answer):
        return str(rng.randint(2, 999))
    n = int(answer)
    while True:
        m = rng.randint(0, max(99, 10 * abs(n)))
        a, b = str(abs(n)).zfill(8), str(m).zfill(8)
        if sum(x != y for x, y in zip(a, b)) >= 2:
            return str(m)


def plain(answer: str) -> str:
    """A reference answer as the judge's rationale writes it: ``\\frac{3}{4}`` -> ``3/4``."""
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", answer)
    return f"{m.group(1)}{m.group(2)}/{m.group(3)}" if m else answer


def graded_answer(rng: random.Random, answer: str) -> tuple[str | None, int, str, str]:
    """A final answer to an item whose reference is ``answer``, with its grade, its kind and the
    judge's rationale ``"<value read> vs <reference>: <relation>"``. The value (same, near miss,
    wrong, none) is drawn apart from the form (plain, an equivalent form, extra words, hedged with a
    second value), so neither alone tells the grade: only comparing the value with the reference does."""
    ref = plain(answer)
    value = rng.choices(["same", "near", "wrong", "none"], weights=[0.45, 0.2, 0.25, 0.1])[0]
    if value == "none":
        return None, 1, "no answer", "no answer"
    v = {"same": answer, "near": near_miss(rng, answer), "wrong": wrong_value(rng, answer)}[value]
    if v is None:  # no near miss of a fraction
        value, v = "wrong", wrong_value(rng, answer)
    form = rng.choice(["plain", "plain", "equivalent", "extra words", "hedged"])
    other = wrong_value(rng, answer)
    if form == "hedged":
        text, read = rng.choice([(f"{v} or {other}", f"{plain(v)} or {other}"), (f"{other} or {v}", f"{other} or {plain(v)}")])
        grade, relation = (3, "hedged") if value == "same" else (1, "hedged, wrong")
    else:
        forms = equivalent_forms(v) if form == "equivalent" else []
        text = rng.choice(forms) if forms else v
        form = form if forms or form != "equivalent" else "plain"
        if form == "extra words":
            text = rng.choice([f"the answer is {v}", f"{v} in total", f"= {v}"])
        read = plain(v)
        grade, relation = {"same": (5, "same"), "near": (2, "near miss"), "wrong": (1, "wrong")}[value]
        if value == "same" and form == "extra words":
            grade, relation = 4, "same, extra words"
    return text, grade, f"{value}: {form}", f"{read} vs {ref}: {relation}"
