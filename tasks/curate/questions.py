"""python -m tasks.curate.questions --input PATH --output DIR [--params params.yaml] [--set KEY=VALUE]

Stage 4 (report section 4.1): "filter out samples containing multiple sub-problems, proof-based
questions, and binary questions (e.g., true/false) that are susceptible to random guessing.
Multiple-choice questions are reformulated into open-ended formats ... retaining only those samples
whose extracted answers can be correctly parsed by our rule-based answer checker."

Per row, in this order:

1. multiple choice (options ``(A) .. (B) ..``, ``A. .. B. ..``, ``A) ..`` or ``A: ..``, lettered from A,
   upper or lower case, at least two): the options are cut from the question, "which of the
   following" becomes "what", and the answer becomes the text of the option it names (a letter, or a
   letter with the option's text, or the text itself) -> ``mc_unresolved`` when it names none;
2. ``binary``: a true/false or yes/no question, or an answer that is one of those words;
3. ``proof``: "prove", "show that", "demonstrate that", "justify" ... in the question, or a proof
   as the answer;
4. ``multi_part``: two or more sub-problems ``(a) (b)``, ``(i) (ii)``, numbered lines, "part 1",
   two or more question marks, or an answer listing values separated by ``;``;
5. ``unparseable_answer``: ``tasks.envs.mathverify.parse_clean`` (math-verify, no fallback, its own
   timeout off the main thread) finds no single clean value in the answer.

Rewritten rows keep their new question and answer; ``report.json`` counts them (``mc_rewritten``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
from tqdm import tqdm

from tasks.config import Params, exits_cleanly, load, param, stage_parser
from tasks.curate.io import INPUT_HELP, ROW, StageWriter, batches, scan



@dataclass
class QuestionsParams(Params):
    """``curate.questions``: the rule-based answer checker's budget."""

    SECTION: ClassVar[str] = "curate.questions"
    parse_timeout_s: float = param(5.0, gt=0.0, help="math-verify per answer, enforced off the main thread")
    chunk_size: int = param(4096, ge=1, help="rows per streamed batch (a memory bound, not a result knob)")


_OPTION = re.compile(r"(?:^|(?<=\s))(?:\(([A-Ea-e])\)|([A-Ea-e])[.):])\s+")
_LETTER_ANSWER = re.compile(r"^\s*\(?([A-Ea-e])\)?(?:[.):]\s*(.*))?\s*$", re.S)
_STEM_TAIL = re.compile(r"(?i)\s*(?:answer\s+choices|choices|options|select one|choose one)\s*:?\s*$")
_WHICH = re.compile(r"(?i)\bwhich\s+of\s+the\s+following\b(?:\s+(?:options|choices|values|numbers))?")
_BINARY_Q = re.compile(r"(?i)\btrue\s+or\s+false\b|\btrue\s*/\s*false\b|\bT\s*/\s*F\b|\byes\s+or\s+no\b|\bis\s+it\s+true\s+that\b")
_BINARY_A = re.compile(r"(?i)^\s*(?:true|false|yes|no|t|f|correct|incorrect)\s*\.?\s*$")
_PROOF_Q = re.compile(r"(?i)\b(?:prove|proof|show\s+that|demonstrate\s+that|justify|verify\s+that|deduce\s+that)\b")
_PROOF_A = re.compile(r"(?i)^\s*proof\b|q\.?e\.?d\.?\s*$|∎|\\blacksquare")
_SUBPARTS = re.compile(r"(?:^|\s)\((?:[a-h]|i{1,3}|iv|v|vi{0,3})\)\s")
_NUMBERED = re.compile(r"(?m)^\s*(?:\d+[.)]|\([ivx]+\)|[a-h][.)])\s+\S")
_SEVERAL_ANSWERS = re.compile(r"\S\s*;\s*\S")
_PART = re.compile(r"(?i)\bpart\s*\(?(?:[a-h]|\d+|[ivx]+)\)?\s*[:.)]")


def split_options(question: str) -> tuple[str, list[str]] | None:
    """(stem, [option texts]) when the question lists options lettered A, B, ... in order, else None."""
    found = []  # (start, end of marker, letter index)
    for m in _OPTION.finditer(question):
        letter = (m.group(1) or m.group(2)).upper()
        want = len(found)
        if ord(letter) - ord("A") == want:
            if want and (m.group(1) is None) != (found[0][3] is None):
                continue  # "(A) ... B. ..." mixes styles: B. is text, not a marker
            found.append((m.start(), m.end(), want, m.group(1)))
        elif letter == "A" and len(found) < 2:
            found = [(m.start(), m.end(), 0, m.group(1))]
    if len(found) < 2:
        return None
    opts = [question[f[1] : (found[i + 1][0] if i + 1 < len(found) else len(question))].strip() for i, f in enumerate(found)]
    opts = [o.rstrip(";,").strip() for o in opts]
    return question[: found[0][0]].strip(), opts


def _is_lowercase_options(question: str) -> bool:
    m = _OPTION.search(question)
    return m is not None and (m.group(1) or m.group(2)).islower()


def rewrite_multiple_choice(question: str, answer: str) -> tuple[str, str] | None | bool:
    """(open question, option text) for a multiple-choice row; False if not multiple choice; None if unresolved."""
    parts = split_options(question)
    if parts is None:
        return False
    stem, opts = parts
    pick = None
    m = _LETTER_ANSWER.match(answer)
    if m and ord(m.group(1).upper()) - ord("A") < len(opts):
        pick = opts[ord(m.group(1).upper()) - ord("A")]
    else:
        norm = answer.strip().rstrip(".").lower()
        same = [o for o in opts if o.strip().rstrip(".").lower() == norm]
        pick = same[0] if same else None
    stem = _WHICH.sub("what", _STEM_TAIL.sub("", stem)).strip()
    if not pick or not stem:
        # "(a) ... (b) ..." with an open answer is a multi-part question, not options
        return False if (not stem or _is_lowercase_options(question)) else None
    return stem[0].upper() + stem[1:], pick


def classify(question: str, answer: str) -> tuple[str | None, str, str]:
    """(reason or None, question, answer) after the MC rewrite and the structural checks (not the parse)."""
    mc = rewrite_multiple_choice(question, answer)
    if mc is None:
        return "mc_unresolved", question, answer
    if mc:
        question, answer = mc
    if _BINARY_Q.search(question) or _BINARY_A.match(answer):
        return "binary", question, answer
    if _PROOF_Q.search(question) or _PROOF_A.search(answer):
        return "proof", question, answer
    if (
        len(set(_SUBPARTS.findall(question))) >= 2
        or len(_NUMBERED.findall(question)) >= 2
        or len(_PART.findall(question)) >= 2
        or question.count("?") >= 2
        or _SEVERAL_ANSWERS.search(answer)
    ):
        return "multi_part", question, answer
    return None, question, answer


def questions(input_path: str | Path, output_dir: str | Path, params: QuestionsParams) -> dict[str, Any]:
    """Reject multi-part, proof and binary questions, rewrite multiple choice, keep parseable answers."""
    from tasks.envs.mathverify import parse_clean

    lf = scan(input_path)
    writer = StageWriter(output_dir, "questions", input_path)
    rewritten, template = 0, None
    for df in tqdm(batches(lf, params.chunk_size, input_path), desc="questions", unit="batch"):
        qs, ans, reasons = [], [], []
        for q, a in zip(df["question"].fill_null("").to_list(), df["answer"].fill_null("").to_list()):
            reason, q2, a2 = classify(q, a)
            rewritten += reason is None and (q2, a2) != (q, a)
            if reason is None and parse_clean(a2, timeout_s=params.parse_timeout_s) is None:
                reason = "unparseable_answer"
            qs.append(q2 if reason is None else q)
            ans.append(a2 if reason is None else a)
            reasons.append(reason)
        df = df.with_columns(pl.Series("question", qs, pl.String), pl.Series("answer", ans, pl.String))
        writer.write(df, reasons)
        template = df if template is None else template
    return writer.close((template if template is not None else lf.head(0).collect()).drop(ROW), mc_rewritten=rewritten)


PARAMS = {"curate.questions": QuestionsParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, {"input": INPUT_HELP}, prog="python -m tasks.curate.questions").parse_args(argv)
    params = load(args.params, PARAMS, args.set)["curate.questions"]
    report = questions(args.input, args.output, params)
    print({k: report[k] for k in ("rows_in", "kept", "rejected", "by_reason", "rows_per_s")})


if __name__ == "__main__":
    main()
