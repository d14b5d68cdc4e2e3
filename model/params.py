"""The small loader of params.yaml: each entry point reads its own section."""

from __future__ import annotations

from pathlib import Path


def load_section(name: str, path: str | Path = "params.yaml") -> dict:
    """The ``name`` section of params.yaml ({} when the file or the section is absent)."""
    import yaml

    path = Path(path)
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get(name) or {}
