"""Reading, validating and writing what every curation stage shares (report section 4.1).

Every stage reads JSONL, Parquet or CSV with at least ``question`` and ``answer`` (anything else
passes through), streams it in batches through polars' streaming engine, and writes

- ``DIR/kept.parquet``: the rows that survive, same columns (a stage may add a documented one),
- ``DIR/rejected.parquet``: the rest, the same columns plus ``stage`` and ``reason``,
- ``DIR/report.json``: counts by reason, throughput and anything stage-specific.

kept + rejected hold every input row exactly once; ``StageWriter.close`` checks the count.
"""

from __future__ import annotations

import codecs
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.config import UsageError

REQUIRED = ("question", "answer")
ROW = "_row"  # 0-based input row number, carried through a stage and dropped on write
INPUT_HELP = "JSONL, Parquet or CSV with question and answer columns"


class CurateInputError(UsageError):
    """Input that a stage cannot use; the message names the file, the row or column, and what was expected."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for ext in (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv"):
        if name.endswith(ext):
            return ext
    raise CurateInputError(f"{path}: unknown file type; expected .jsonl, .parquet or .csv")


def _first_bad_json_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                return f"line {i}: not valid JSON ({e.msg})"
            if not isinstance(obj, dict):
                return f"line {i}: expected a JSON object, got {type(obj).__name__}"
    return "no single bad line found"


def _check_utf8(path: Path, block: int = 1 << 20) -> None:
    """Raise CurateInputError naming the first line of a text file that is not UTF-8 (polars would
    stop on it with a bare "invalid utf-8 sequence", mid-stream and without a row)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(block)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                at = fed - (len(e.object) - len(data)) + e.start  # the decoder may hold a split character
                bad = e.object[e.start]
                break
            if not data:
                return
            fed += len(data)
        f.seek(0)
        line, line_start = 1, 0
        for lo in range(0, at, block):
            chunk = f.read(min(block, at - lo))
            line += chunk.count(b"\n")
            if (nl := chunk.rfind(b"\n")) >= 0:
                line_start = lo + nl + 1
    raise CurateInputError(f"{path}: line {line} is not UTF-8 (byte 0x{bad:02x}, byte {at - line_start + 1} of the line); "
                           "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8")


def _open_lazy(path: Path) -> tuple[pl.LazyFrame, pl.Schema]:
    """A lazy frame over a JSONL, Parquet or CSV file and its schema; CurateInputError names what is wrong."""
    if not path.exists():
        raise CurateInputError(f"{path}: no such file")
    ext = _suffix(path)
    if ext not in (".parquet", ".pq"):
        _check_utf8(path)
    try:
        if ext in (".parquet", ".pq"):
            lf = pl.scan_parquet(path)
        elif ext == ".csv":
            lf = pl.scan_csv(path, infer_schema=False)  # every column stays text: answers like 007 survive
        else:
            lf = pl.scan_ndjson(path, infer_schema_length=None)
        return lf, lf.collect_schema()
    except Exception as e:  # polars raises several error types for unreadable files
        where = _first_bad_json_line(path) if ext in (".jsonl", ".ndjson", ".json") else str(e).splitlines()[0]
        raise CurateInputError(f"{path}: cannot read as {ext[1:]}: {where}") from e


def scan(path: str | os.PathLike, required: tuple[str, ...] = REQUIRED) -> pl.LazyFrame:
    """A lazy frame over ``path`` with a ``_row`` index, ``question``/``answer`` as strings.

    Raises CurateInputError naming the file and what is wrong: missing file, unknown type, a line
    that is not JSON, a missing required column, or a required column that is not text.
    """
    path = Path(path)
    lf, schema = _open_lazy(path)
    missing = [c for c in required if c not in schema]
    if missing:
        raise CurateInputError(
            f"{path}: missing column(s) {missing}; expected at least {list(required)}, found {list(schema)}"
        )
    for c in required:
        if schema[c] not in (pl.String, pl.Null) and not schema[c].is_numeric():
            raise CurateInputError(f"{path}: column {c!r} has type {schema[c]}; expected text")
    return lf.with_row_index(ROW).with_columns(
        [pl.col(c).cast(pl.String) for c in required]
    )


def batches(lf: pl.LazyFrame, chunk_size: int, path: str | os.PathLike) -> Iterator[pl.DataFrame]:
    """Stream ``lf`` in chunks of about ``chunk_size`` rows, in order (larger-than-memory inputs work).

    A read error past the schema (a ragged CSV line, a corrupt Parquet page) surfaces here as a
    CurateInputError naming the row reached.
    """
    seen = 0
    it = iter(lf.collect_batches(chunk_size=chunk_size))
    while True:
        try:
            df = next(it)
        except StopIteration:
            return
        except Exception as e:  # polars' compute and I/O errors
            raise CurateInputError(f"{path}: cannot read past row {seen}: "
                                   f"{str(e).splitlines()[0]}") from e
        seen += df.height
        if df.height:
            yield df


def count_rows(lf: pl.LazyFrame, path: str | os.PathLike) -> int:
    """The number of rows of ``lf`` (for a progress bar); a read error is a CurateInputError naming ``path``."""
    try:
        return lf.select(pl.len()).collect().item()
    except Exception as e:  # polars' compute and I/O errors
        raise CurateInputError(f"{path}: cannot read: {str(e).splitlines()[0]}") from e


def read_texts(path: str | os.PathLike, columns: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Texts and ids of a small reference file (a benchmark or an SFT set): the first of ``columns`` present."""
    path = Path(path)
    lf, _ = _open_lazy(path)
    try:
        df = lf.collect()
    except Exception as e:  # polars raises several error types for unreadable files
        raise CurateInputError(f"{path}: cannot read: {str(e).splitlines()[0]}") from e
    col = next((c for c in columns if c in df.columns), None)
    if col is None:
        raise CurateInputError(f"{path}: no text column; expected one of {list(columns)}, found {df.columns}")
    id_col = next((c for c in ("id", "task_id") if c in df.columns), None)
    texts = df[col].cast(pl.String).fill_null("").to_list()
    ids = df[id_col].cast(pl.String).to_list() if id_col else [str(i) for i in range(len(texts))]
    return texts, ids


class StageWriter:
    """Streams a stage's kept and rejected rows to Parquet and writes its report."""

    def __init__(self, out_dir: str | os.PathLike, stage: str, input_path: str | os.PathLike):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.stage = stage
        self.input = str(input_path)
        self.t0 = time.perf_counter()
        self.rows_in = 0
        self.kept = 0
        self.reasons: Counter[str] = Counter()
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._schemas: dict[str, pa.Schema] = {}

    def _write(self, name: str, df: pl.DataFrame) -> None:
        table = df.drop(ROW, strict=False).to_arrow()
        if name not in self._writers:
            self._schemas[name] = table.schema
            self._writers[name] = pq.ParquetWriter(self.out / f"{name}.parquet", table.schema)
        self._writers[name].write_table(table.cast(self._schemas[name]))

    def write(self, df: pl.DataFrame, reason: pl.Series | list[str | None]) -> None:
        """Write one batch: rows whose ``reason`` is null are kept, the others rejected with it."""
        reason = pl.Series("reason", reason, dtype=pl.String)
        self.rows_in += df.height
        keep = reason.is_null()
        kept = df.filter(keep)
        rej = df.filter(~keep).with_columns(
            pl.lit(self.stage).alias("stage"), reason.filter(~keep).alias("reason")
        )
        self.kept += kept.height
        self.reasons.update(rej["reason"].to_list())
        self._write("kept", kept)
        self._write("rejected", rej)

    def close(self, template: pl.DataFrame | None = None, **extra: Any) -> dict[str, Any]:
        """Finish both files (empty ones get ``template``'s columns) and write ``report.json``."""
        if template is not None:
            empty = template.head(0)
            if "kept" not in self._writers:
                self._write("kept", empty)
            if "rejected" not in self._writers:
                self._write(
                    "rejected",
                    empty.with_columns(pl.lit(None, pl.String).alias("stage"), pl.lit(None, pl.String).alias("reason")),
                )
        for w in self._writers.values():
            w.close()
        rejected = sum(self.reasons.values())
        assert self.kept + rejected == self.rows_in, "a stage lost or duplicated rows"
        seconds = time.perf_counter() - self.t0
        report = {
            "stage": self.stage,
            "input": self.input,
            "rows_in": self.rows_in,
            "kept": self.kept,
            "rejected": rejected,
            "by_reason": dict(sorted(self.reasons.items())),
            "seconds": round(seconds, 3),
            "rows_per_s": round(self.rows_in / seconds, 1) if seconds > 0 else None,
            **extra,
        }
        (self.out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return report
