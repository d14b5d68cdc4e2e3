"""Data curation stages of report section 4.1, each a plain function over files with a ``python -m`` entry.

``clean`` -> ``dedup`` -> ``decontaminate`` -> ``questions`` (then ``tasks.curate.difficulty``). Each reads
JSONL/Parquet/CSV with ``question`` and ``answer`` and writes ``kept.parquet``, ``rejected.parquet``
(with ``stage`` and ``reason``) and ``report.json`` to its output directory (see ``tasks.curate.io``).
"""
