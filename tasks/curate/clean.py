"""python -m tasks.curate.clean --input PATH --output DIR [--params params.yaml] [--set KEY=VALUE]

Stage 1 of the math data pipeline (report section 4.1): "removal of incomplete samples and those
exhibiting formatting or typographical errors".

Every row is normalised first (Unicode form from params, NFC by default because NFKC would turn
``x²`` into ``x2``; zero-width characters dropped; runs of spaces collapsed and trailing spaces
removed, leading indentation kept for code). Raw documents and worked solutions are then reduced to a
(question, final answer) pair (see ``tasks.curate.extract``; the worked solution goes to the added
``solution`` column). A row is rejected, first matching reason wins, when:

- ``empty_question`` / ``empty_answer``: nothing left after normalisation (and no extraction);
- ``short_question``: fewer than ``min_question_chars`` characters;
- ``truncated_question`` / ``truncated_answer``: ends in ``...``, a dangling operator or a
  dangling function word (``of``, ``the``, ...; questions only, an answer may be ``A``), the
  marks of a cut-off sample;
- ``mojibake``: the byte sequences of UTF-8 read as Latin-1/CP1252 (``Ã©``, ``â€™``) or U+FFFD;
- ``unbalanced_dollar``: an odd number of unescaped ``$`` outside code, also after dropping
  currency amounts (``$5``);
- ``unbalanced_braces``: unequal numbers of unescaped ``{`` and ``}``;
- ``unbalanced_code_fence``: an odd number of ``````` fences.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
from tqdm import tqdm

from tasks.curate.extract import extract
from tasks.config import Params, exits_cleanly, load, param, stage_parser
from tasks.curate.io import INPUT_HELP, ROW, StageWriter, batches, scan

@dataclass
class CleanParams(Params):
    """``curate.clean``: normalisation and the malformed-row filters."""

    SECTION: ClassVar[str] = "curate.clean"
    unicode_form: str = param("NFC", choices=("NFC", "NFKC", "NFD", "NFKD"),
                              help="Unicode normal form; NFKC would turn x² into x2")
    min_question_chars: int = param(8, ge=0, help="shorter questions are rejected as short_question")
    long_answer_chars: int = param(40, ge=1, help="longer answers (or any \\boxed) are worked solutions: "
                                                  "their final answer is extracted")
    chunk_size: int = param(65536, ge=1, help="rows per streamed batch (a memory bound, not a result knob)")

_DOC_MARKERS = r"(?is)(?:^|\n|\*\*|#\s*)\s*(?:question|q|problem|exercise|example)\b.*(?:answer|a|ans|solution|proof)\s*[:.)]"
_MOJIBAKE = r"[ÃÂ][\x{80}-\x{BF}]|â€|\x{FFFD}"
_DANGLING_WORD = r"(?i)\b(?:the|a|an|of|to|and|or|with|for|by|is|are|if|that|then|than|in|on|at|from|as)$"


def normalise(expr: pl.Expr, form: str) -> pl.Expr:
    """Unicode form, no zero-width characters, collapsed inner spaces, no trailing spaces, at most one blank line."""
    return (
        expr.fill_null("")
        .str.normalize(form)
        .str.replace_all("\r\n?", "\n")
        .str.replace_all("[\u200b\u200c\u200d\u2060\ufeff]", "")
        .str.replace_all(r"(\S)[^\S\n]+", "$1 ")
        .str.replace_all(r"[^\S\n]+\n", "\n")
        .str.replace_all(r"\n{3,}", "\n\n")
        .str.strip_chars()
    )


def _odd_dollars(e: pl.Expr) -> pl.Expr:
    text = e.str.replace_all(r"(?s)```.*?```", "").str.replace_all(r"`[^`\n]*`", "").str.replace_all(r"\\\$", "")
    no_currency = text.str.replace_all(r"\$\d[\d,]*(?:\.\d+)?", "")
    return (text.str.count_matches(r"\$") % 2 == 1) & (no_currency.str.count_matches(r"\$") % 2 == 1)


def _unbalanced_braces(e: pl.Expr) -> pl.Expr:
    text = e.str.replace_all(r"\\[{}]", "")
    return text.str.count_matches(r"\{") != text.str.count_matches(r"\}")


def _truncated(e: pl.Expr, operators: str) -> pl.Expr:
    return e.str.contains(r"(?:\.\.\.|…)$") | e.str.contains(operators)


def reasons_expr(min_question_chars: int) -> pl.Expr:
    """The rejection reason of each normalised row (null = keep), first matching check wins."""
    q, a = pl.col("question"), pl.col("answer")
    both = lambda f: f(q) | f(a)  # noqa: E731
    return (
        pl.when(q == "").then(pl.lit("empty_question"))
        .when(a == "").then(pl.lit("empty_answer"))
        .when(q.str.len_chars() < min_question_chars).then(pl.lit("short_question"))
        .when(_truncated(q, r"[=+*/^(\[{,-]$") | q.str.contains(_DANGLING_WORD)).then(pl.lit("truncated_question"))
        .when(_truncated(a, r"[=(\[{,]$")).then(pl.lit("truncated_answer"))
        .when(both(lambda e: e.str.contains(_MOJIBAKE))).then(pl.lit("mojibake"))
        .when(both(_odd_dollars)).then(pl.lit("unbalanced_dollar"))
        .when(both(_unbalanced_braces)).then(pl.lit("unbalanced_braces"))
        .when(both(lambda e: e.str.count_matches("```") % 2 == 1)).then(pl.lit("unbalanced_code_fence"))
        .otherwise(pl.lit(None, pl.String))
    )


def _extract_batch(df: pl.DataFrame, long_answer_chars: int) -> tuple[pl.DataFrame, int]:
    """Apply ``extract`` to the rows that may need it; returns the batch and how many rows changed."""
    need = df.select(
        ((pl.col("answer") == "") & pl.col("question").str.contains(_DOC_MARKERS))
        | (pl.col("answer").str.len_chars() > long_answer_chars)
        | pl.col("answer").str.contains(r"\\boxed|\\fbox")
    ).to_series()
    if not need.any():
        return df, 0
    idx = need.arg_true().to_list()
    qs, ans, sols = df["question"].to_list(), df["answer"].to_list(), df["solution"].to_list()
    changed = 0
    for i in idx:
        got = extract(qs[i], ans[i], long_answer_chars)
        if got is not None:
            qs[i], ans[i] = got[0], got[1]
            sols[i] = got[2] if got[2] is not None else sols[i]
            changed += 1
    return df.with_columns(
        pl.Series("question", qs, pl.String), pl.Series("answer", ans, pl.String), pl.Series("solution", sols, pl.String)
    ), changed


def clean(input_path: str | Path, output_dir: str | Path, params: CleanParams) -> dict[str, Any]:
    """Normalise, extract and check every row of ``input_path``; write kept/rejected/report to ``output_dir``."""
    lf = scan(input_path)
    if "solution" not in lf.collect_schema():
        lf = lf.with_columns(pl.lit(None, pl.String).alias("solution"))
    lf = lf.with_columns(
        normalise(pl.col("question"), params.unicode_form),
        normalise(pl.col("answer"), params.unicode_form),
        pl.col("solution").cast(pl.String),
    )
    writer = StageWriter(output_dir, "clean", input_path)
    extracted, template = 0, None
    t_extract = 0.0
    for df in tqdm(batches(lf, params.chunk_size, input_path), desc="clean", unit="batch"):
        t = time.perf_counter()
        df, n = _extract_batch(df, params.long_answer_chars)
        t_extract += time.perf_counter() - t
        extracted += n
        reason = df.select(reasons_expr(params.min_question_chars)).to_series()
        writer.write(df, reason)
        template = df if template is None else template
    if template is None:
        template = lf.head(0).collect()
    return writer.close(template.drop(ROW), extracted=extracted, extract_seconds=round(t_extract, 3))


PARAMS = {"curate.clean": CleanParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, {"input": INPUT_HELP}, prog="python -m tasks.curate.clean").parse_args(argv)
    params = load(args.params, PARAMS, args.set)["curate.clean"]
    report = clean(args.input, args.output, params)
    print({k: report[k] for k in ("rows_in", "kept", "rejected", "by_reason", "rows_per_s")})


if __name__ == "__main__":
    main()
