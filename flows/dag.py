"""The pipeline's one DAG definition; ``dvc.yaml`` is generated from it.

    python -m flows.dag --write     # regenerate dvc.yaml from STAGES
    python -m flows.dag --check     # exit 1 if dvc.yaml has drifted

A stage is a module's command line over files: ``python -m <module> --<input> PATH ... --output PATH
--params params.yaml``. Its stage entry names only the module, its inputs and its output; the rest is
derived, so nothing is typed twice:

- its code dependencies are the import closure of the module (``import_closure``: every project
  file the module imports, directly or not, package ``__init__`` files included);
- its params are the keys of the module's ``PARAMS`` mapping (``tasks.config``: the sections its
  ``main`` loads), read from the module's source.

The stage list is ``flows.stages.STAGES``. The Prefect flow (``flows.full_pipeline``) runs the same
commands in the same order, so Prefect and DVC cannot drift apart: a test holds ``dvc.yaml`` equal to
``to_dvc(STAGES)``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tasks import ROOT
PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Stage:
    """One node of the DAG: ``python -m module --<name> <path> ... --output <output> --params params.yaml``."""

    name: str
    module: str
    #: flag name -> path of each file or folder the stage reads (the flag is ``--<name>``); a tuple of
    #: paths repeats the flag, one path each (``--policy a --policy b``)
    inputs: dict[str, str | tuple[str, ...]] = field(default_factory=dict)
    #: the file or folder the stage writes
    output: str = ""
    #: placed on a GPU worker at scale (Prefect tag "gpu"); runs on CPU at the tiny default
    gpu: bool = False
    #: nothing runs beside it: it starts once every stage before it (in topological order) has ended,
    #: and every stage after it waits for it (``waits``); an ordering, not a data dependency
    alone: bool = False
    description: str = ""

    @property
    def argv(self) -> list[str]:
        flags = [x for name, paths in self.inputs.items() for path in _paths(paths)
                 for x in (f"--{name.replace('_', '-')}", path)]
        return ["-m", self.module, *flags, "--output", self.output, "--params", PARAMS_FILE]

    @property
    def cmd(self) -> str:
        return " ".join(["python", *self.argv])

    @property
    def deps(self) -> tuple[str, ...]:
        return tuple(path for paths in self.inputs.values() for path in _paths(paths))

    @property
    def outs(self) -> tuple[str, ...]:
        return (self.output,)

    def code(self, root: Path = ROOT) -> tuple[str, ...]:
        """The project files the stage's module imports (its code dependencies), relative to ``root``."""
        return import_closure(self.module, root)

    def params(self, root: Path = ROOT) -> tuple[str, ...]:
        """The params.yaml sections the stage reads: the keys of its module's ``PARAMS``."""
        return declared_params(self.module, root)


def _paths(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


_PARSE_LOCK = threading.Lock()


def _parse(path: Path) -> ast.Module:
    """``ast.parse`` of a file, one at a time: CPython 3.11's parser is not thread-safe (two Prefect
    task threads fingerprinting at once failed with "AST constructor recursion depth mismatch")."""
    with _PARSE_LOCK:
        return ast.parse(path.read_text(), filename=str(path))


def module_file(name: str, root: Path) -> Path | None:
    """The source file of module ``name`` under ``root`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Absolute names of every module ``path`` may import (a ``from x import y`` adds ``x`` and ``x.y``)."""
    tree = _parse(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def import_closure(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """Every project file reached by importing ``module`` from ``root``, sorted, relative to ``root``.

    Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so those count too.
    Only static imports are seen: ``tests/test_dag_deps.py`` forbids dynamic ones in project code.
    """
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            path = module_file(prefix, root)
            if path is None:
                continue
            seen[prefix] = path
            todo.extend(_imported_names(path, prefix))
    if module not in seen:
        raise ModuleNotFoundError(f"stage module {module!r} has no source file under {root}")
    return tuple(sorted(str(p.relative_to(root)) for p in seen.values()))


def declared_params(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """The keys of ``PARAMS = {"section": Class, ...}`` in the module's source (empty when it has none)."""
    path = module_file(module, root)
    if path is None:
        raise ModuleNotFoundError(f"stage module {module!r} has no source file under {root}")
    for node in _parse(path).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "PARAMS" for t in targets):
            if not isinstance(node.value, ast.Dict) or not all(isinstance(k, ast.Constant) for k in node.value.keys):
                raise ValueError(f"{path}: PARAMS must be a dict literal with string keys")
            return tuple(k.value for k in node.value.keys)
    return ()


def upstream(stage: Stage, stages: list[Stage]) -> list[str]:
    """Names of the stages whose outputs ``stage`` reads."""
    producers = {out: s.name for s in stages for out in s.outs}
    names = []
    for dep in stage.deps:
        for out, name in producers.items():
            if (dep == out or dep.startswith(out.rstrip("/") + "/")) and name not in names:
                names.append(name)
    return names


def waits(stage: Stage, stages: list[Stage]) -> list[str]:
    """Names of the stages ``stage`` starts after: those it reads from, and around a stage that runs
    ``alone``, every stage before it (for that stage) or that stage (for every stage after it)."""
    order = topological(stages)
    earlier = order[: [s.name for s in order].index(stage.name)]
    names = upstream(stage, stages)
    return names + [s.name for s in earlier if (stage.alone or s.alone) and s.name not in names]


def beside(stage: Stage, stages: list[Stage]) -> list[Stage]:
    """The stages neither above nor below ``stage`` in the flow's order (``waits``): those a flow
    that runs independent stages concurrently may run beside it."""
    above = {s.name: set(waits(s, stages)) for s in stages}

    def closure(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            for u in above[todo.pop()] - seen:
                seen.add(u)
                todo.append(u)
        return seen
    ancestors = closure(stage.name)
    return [s for s in stages if s.name != stage.name and s.name not in ancestors and stage.name not in closure(s.name)]


def topological(stages: list[Stage]) -> list[Stage]:
    """Stages ordered so each comes after every stage it reads from; a cycle is an error."""
    by_name = {s.name: s for s in stages}
    done: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise ValueError(f"the DAG has a cycle through stage {name!r}")
        visiting.add(name)
        for up in upstream(by_name[name], stages):
            visit(up)
        visiting.discard(name)
        done.append(name)

    for s in stages:
        visit(s.name)
    return [by_name[n] for n in done]


def to_dvc(stages: list[Stage], root: Path = ROOT) -> dict:
    """The ``dvc.yaml`` document for ``stages``."""
    out = {}
    for s in stages:
        entry: dict = {"cmd": s.cmd, "deps": [*s.code(root), *s.deps]}
        if s.params(root):
            entry["params"] = list(s.params(root))
        entry["outs"] = list(s.outs)
        out[s.name] = entry
    return {"stages": out}


def _hash_path(path: Path, h: "hashlib._Hash") -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(path)).encode())
                h.update(p.read_bytes())
    elif path.exists():
        h.update(path.read_bytes())
    else:
        h.update(b"<missing>")


def params_values(keys: tuple[str, ...], params_file: Path) -> dict:
    """The raw values of sections ``keys`` in ``params_file`` (through ``tasks.config``, the one reader)."""
    from tasks.config import read_params, section_values

    if not keys:
        return {}
    doc = read_params(params_file, check_shape=False)
    return {key: section_values(doc, key) for key in keys}


def fingerprint(stage: Stage, root: Path = ROOT) -> str:
    """A hash of everything the stage's result depends on: command, code, inputs, params."""
    h = hashlib.sha256(stage.cmd.encode())
    for dep in (*stage.code(root), *stage.deps):
        h.update(dep.encode())
        _hash_path(root / dep, h)
    h.update(json.dumps(params_values(stage.params(root), root / PARAMS_FILE), sort_keys=True).encode())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write dvc.yaml")
    ap.add_argument("--check", action="store_true", help="fail if dvc.yaml differs from STAGES")
    args = ap.parse_args(argv)
    from flows.stages import STAGES

    text = "# Generated by `python -m flows.dag --write` from flows/stages.py; do not edit.\n"
    text += yaml.safe_dump(to_dvc(topological(STAGES)), sort_keys=False, width=120)
    path = ROOT / "dvc.yaml"
    if args.write:
        path.write_text(text)
        print(f"wrote {path} ({len(STAGES)} stages)")
    if args.check and (not path.exists() or path.read_text() != text):
        print("dvc.yaml has drifted from flows/stages.py: run `python -m flows.dag --write`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
