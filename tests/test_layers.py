"""Dependencies point one way: flows -> tasks -> model -> kernels (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["kernels", "model", "tasks", "flows"]


def _imported_tops(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    return tops


@pytest.mark.parametrize("layer", ORDER)
def test_no_layer_imports_one_above_it(layer):
    above = set(ORDER[ORDER.index(layer) + 1 :])
    bad = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        hits = _imported_tops(path) & above
        if hits:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)


def test_model_code_stays_single_device():
    for layer in ("model", "kernels"):
        for path in (ROOT / layer).rglob("*.py"):
            assert "torch.distributed" not in path.read_text(), f"{path} uses torch.distributed"

