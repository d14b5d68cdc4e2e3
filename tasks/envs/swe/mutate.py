"""Seeded bugs: one-token mutations of a module's source, and the unified diffs that undo them.

A mutation swaps a comparison (``<`` for ``<=``, ``==`` for ``!=``), an arithmetic operator (``+``
for ``-``, ``*`` for ``+``, ``//`` for ``%``), a boolean operator (``and`` for ``or``) or bumps a
small integer constant by one, inside a function body. Each edit touches one span of one line, so the
fix is a one-line diff, like a real off-by-one or flipped-condition bug.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass

_CMP = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
        ast.Eq: ("==", "!="), ast.NotEq: ("!=", "==")}
_BIN = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "+"), ast.FloorDiv: ("//", "%"),
        ast.Mod: ("%", "//")}
_BOOL = {ast.And: ("and", "or"), ast.Or: ("or", "and")}


@dataclass(frozen=True)
class Mutation:
    line: int  # 1-based
    start: int  # column span of the replaced text on that line
    end: int
    new: str
    function: str
    description: str

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        text = lines[self.line - 1]
        lines[self.line - 1] = text[:self.start] + self.new + text[self.end:]
        return "".join(lines)


def _between(lines: list[str], left: ast.AST, right: ast.AST, token: str) -> tuple[int, int] | None:
    """Column span of ``token`` between two nodes on one line, or None."""
    if left.end_lineno != right.lineno:
        return None
    text = lines[right.lineno - 1]
    gap = text[left.end_col_offset:right.col_offset]
    at = gap.find(token)
    if at < 0 or gap.strip() != token:
        return None
    return left.end_col_offset + at, left.end_col_offset + at + len(token)


def mutations(source: str) -> list[Mutation]:
    """Every candidate one-token mutation inside a function of ``source``, in source order."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found: list[Mutation] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if function and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.extend(_at(child, lines, function))
            visit(child, name)

    visit(tree, "")
    return sorted(set(found), key=lambda m: (m.line, m.start, m.new))


def _at(node: ast.AST, lines: list[str], function: str) -> list[Mutation]:
    out = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
        old, new = _CMP[type(node.ops[0])]
        span = _between(lines, node.left, node.comparators[0], old)
        if span:
            out.append(Mutation(node.lineno, *span, new, function, f"`{old}` -> `{new}`"))
    elif isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        old, new = _BIN[type(node.op)]
        span = _between(lines, node.left, node.right, old)
        if span:
            out.append(Mutation(node.lineno, *span, new, function, f"`{old}` -> `{new}`"))
    elif isinstance(node, ast.BoolOp) and len(node.values) == 2:
        old, new = _BOOL[type(node.op)]
        span = _between(lines, node.values[0], node.values[1], old)
        if span:
            out.append(Mutation(node.lineno, *span, new, function, f"`{old}` -> `{new}`"))
    elif (isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= 10
          and node.lineno == node.end_lineno):
        out.append(Mutation(node.lineno, node.col_offset, node.end_col_offset, str(node.value + 1), function,
                            f"`{node.value}` -> `{node.value + 1}`"))
    return out


def unified_diff(path: str, before: str, after: str) -> str:
    """A ``git apply``-able diff turning ``before`` into ``after`` for the file at ``path``."""
    body = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                fromfile=f"a/{path}", tofile=f"b/{path}", n=3)
    return f"diff --git a/{path} b/{path}\n" + "".join(body)
