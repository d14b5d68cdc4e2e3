"""One way to configure: ``params.yaml`` -> one dataclass per section -> the stage function.

    python -m tasks.config --check [--params params.yaml]    # every section, every value
    python -m tasks.config --show rl                         # one section's fields, values and help
    python -m tasks.config --write-defaults FILE             # every section's defaults, commented

Each section of params.yaml is a ``Params`` dataclass whose ``SECTION`` is its dotted key
(``curate.clean``, ``rl``); its fields are declared with ``param(default, help=..., <allowed>)``.
The dataclass holds the only defaults, and the shipped params.yaml writes them out (a test keeps
the two equal). ``load`` is the only reader of params.yaml: it refuses a missing file, unknown
sections and unknown keys, applies ``--set key=value`` overrides, converts each YAML value to its
field's type and checks it against what the field allows; ``Params.check`` adds rules across
fields. Every failure is a ``ParamsError`` naming the file, the key, the bad value and what is
allowed; ``exits_cleanly`` turns it into one line on stderr and exit status 2.

A stage module declares what it reads, ``PARAMS = {"rl": RLParams, "envs": EnvParams}``, calls
``load(args.params, PARAMS, args.set)`` once in ``main`` and passes the dataclasses down.
``flows.dag`` reads the same ``PARAMS`` (by parsing the module) to list the stage's params for DVC.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import math
import operator
import sys
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

#: Every section params.yaml may hold, by dotted key, with the class that reads it (imported only by
#: ``check_file``, so a stage's code dependencies stay its own). A key with dots is nested under
#: groups (``curate``) that hold nothing else.
SECTIONS: dict[str, str] = {
    "raw_math": "tasks.curate.synth:RawMathParams",
    "curate.clean": "tasks.curate.clean:CleanParams",
    "curate.dedup": "tasks.curate.dedup:DedupParams",
    "curate.decontaminate": "tasks.curate.decontaminate:DecontaminateParams",
    "curate.questions": "tasks.curate.questions:QuestionsParams",
    "synlogic": "tasks.envs.synlogic.schedule:SynLogicParams",
    "sft": "tasks.train.sft:SFTParams",
    "calibrate": "tasks.curate.calibrate:CalibrateParams",
    "difficulty": "tasks.curate.difficulty:DifficultyParams",
    "rl_data": "tasks.curate.rl_data:RLDataParams",
    "rl": "tasks.train.rl.config:RLParams",
    "extend": "tasks.train.extend.params:ExtendParams",
    "eval": "tasks.train.evaluate:EvalParams",
    "envs": "tasks.envs.params:EnvParams",
    "genrm": "tasks.envs.genrm.params:GenRMParams",
}


class UsageError(ValueError):
    """Input a command cannot use (a bad setting, an unreadable file); its message says what to fix."""


class ParamsError(UsageError):
    """A setting that is missing, unknown or out of range: ``source: key = value: what is allowed``."""

    def __init__(self, key: str, problem: str, source: str | None = None):
        self.key, self.problem, self.source = key, problem, source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.key}{self.problem}"

    def within(self, prefix: str, replace: str = "") -> ParamsError:
        """The same error with its key moved under ``prefix`` (replacing a leading ``replace``)."""
        key = self.key[len(replace):].lstrip(".") if replace and self.key.startswith(replace) else self.key
        return ParamsError(f"{prefix}.{key}" if key else prefix, self.problem, self.source)


def bad_value(key: str, value: Any, allowed: str) -> ParamsError:
    return ParamsError(key, f" = {value!r}: allowed: {allowed}")


def param(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
          choices: Sequence[Any] | None = None, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None) -> Any:
    """A ``Params`` field: its default, a one-line ``help``, and what it allows (``choices`` or bounds)."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None,
            "ge": ge, "gt": gt, "le": le, "lt": lt}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        raise TypeError("a mutable default needs default_factory")
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is Any:
        return "any value"
    if isinstance(tp, type) and issubclass(tp, Params):
        return f"a mapping of {tp.__name__} settings"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {_plural(args[0])}"
    if origin is tuple:
        return f"a list of exactly {len(args)} values ({', '.join(_type_name(a) for a in args)})"
    if origin is list:
        return f"a list of {_plural(args[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(args[1])}"
    return str(tp)


def _plural(tp: Any) -> str:
    names = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}
    return names.get(tp, f"{_type_name(tp)} values")


def _convert(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` (YAML's reading of it), or a ParamsError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad_value(key, value, "true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad_value(key, value, "an integer")
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad_value(key, value, "a number") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
            return float(value)
        raise bad_value(key, value, "a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad_value(key, value, "a string (quote it in YAML)")
    if isinstance(tp, type) and issubclass(tp, Params):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise bad_value(key, value, _type_name(tp))
        return tp.from_mapping(value, key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad_value(key, value, _type_name(tp))
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise bad_value(key, value, _type_name(tp))
            return tuple(_convert(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
        items = [_convert(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad_value(key, value, _type_name(tp))
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise bad_value(f"{key}.{k}", k, "a name (string key)")
            out[k] = _convert(f"{key}.{k}", v, args[1])
        return out
    raise TypeError(f"{key}: unsupported field type {tp!r}")


_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _check_allowed(key: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> None:
    """``value`` against the field's ``choices`` and bounds (each element, for a list)."""
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise bad_value(key, value, "one of " + ", ".join(map(repr, choices)))
    ops = [(op, meta.get(name)) for op, name in ((">=", "ge"), (">", "gt"), ("<=", "le"), ("<", "lt"))]
    ops = [(op, bound) for op, bound in ops if bound is not None]
    values = value if isinstance(value, (list, tuple)) else (value,)
    if any(not _OPS[op](v, bound) for v in values for op, bound in ops):
        rule = " and ".join(f"{op} {bound}" for op, bound in ops)
        raise bad_value(key, value, f"{_type_name(tp)}, each {rule}" if values is value else f"{_type_name(tp)} {rule}")


class Params:
    """Base of the section dataclasses: converts and checks every field when an instance is made.

    Subclasses are ``@dataclass``es with ``SECTION`` (their dotted key; ``*`` for entries of a
    mapping, e.g. ``rl.algorithms.*``) and fields made with ``param``; ``check`` adds rules across
    fields and raises through ``self.fail(field, value, allowed)``.
    """

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            key = f"{self.SECTION}.{f.name}"
            value, tp = getattr(self, f.name), hints[f.name]
            if isinstance(tp, type) and issubclass(tp, Params) and isinstance(value, Mapping) \
                    and f.default_factory is not dataclasses.MISSING:
                value = {**f.default_factory().to_dict(), **value}  # a partial mapping keeps the field's defaults
            value = _convert(key, value, tp)
            _check_allowed(key, value, hints[f.name], f.metadata)
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Rules across fields; the default has none."""

    def fail(self, name: str, value: Any, allowed: str) -> ParamsError:
        return bad_value(f"{self.SECTION}.{name}", value, allowed)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], key: str | None = None) -> Params:
        """An instance from a mapping of YAML values; unknown keys are refused. ``key`` is the
        dotted place of the mapping in params.yaml (default ``SECTION``), used in errors."""
        key = key or cls.SECTION
        fields = dataclasses.fields(cls)
        names = [f.name for f in fields]
        for name in values:
            if name not in names:
                raise ParamsError(f"{key}.{name}", f": unknown key; {cls.__name__} knows {', '.join(names)}")
        for f in fields:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and f.name not in values:
                raise ParamsError(f"{key}.{f.name}", f": missing (required); {f.metadata.get('help', '')}")
        try:
            return cls(**values)
        except ParamsError as e:
            raise e.within(key, cls.SECTION) from None

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        """Plain values (nested sections as dicts, tuples as lists): what params.yaml would hold."""
        return {f.name: Params.to_dict_value(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @staticmethod
    def to_dict_value(v: Any) -> Any:
        if isinstance(v, Params):
            return v.to_dict()
        if isinstance(v, (list, tuple)):
            return [Params.to_dict_value(x) for x in v]
        if isinstance(v, dict):
            return {k: Params.to_dict_value(x) for k, x in v.items()}
        return v


def read_params(path: str | Path, *, check_shape: bool = True) -> dict[str, Any]:
    """The raw tree of a params file, its shape checked (every key a known section or group)
    unless ``check_shape`` is false (hashing values, where validation happens elsewhere)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ParamsError(str(path), ": no such params file")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ParamsError(str(path), f": not valid YAML: {str(e).splitlines()[0]}") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ParamsError(str(path), f": expected a mapping of sections, got {type(doc).__name__}")
    try:
        if check_shape:
            _check_shape(doc, "")
    except ParamsError as e:
        e.source = str(path)
        raise ParamsError(e.key, e.problem, e.source) from None
    return doc


def _check_shape(node: Mapping[str, Any], prefix: str) -> None:
    for name, value in node.items():
        key = f"{prefix}{name}"
        if key in SECTIONS:
            continue
        children = sorted({s[len(key) + 1:].split(".")[0] for s in SECTIONS if s.startswith(key + ".")})
        if not children:
            known = sorted({s[len(prefix):].split(".")[0] for s in SECTIONS if s.startswith(prefix)})
            raise ParamsError(key, f": unknown section; known here: {', '.join(known)}")
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise bad_value(key, value, f"a mapping of {', '.join(children)}")
        _check_shape(value, key + ".")


def section_values(doc: Mapping[str, Any], key: str) -> Any:
    """The raw value at dotted ``key`` of a tree from ``read_params`` ({} where it is absent)."""
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return {}
        node = node[part]
    return node


def _apply_override(doc: dict[str, Any], text: str, sections: Sequence[str]) -> None:
    """``--set key=value``: key relative to the first section, or dotted from a section name."""
    import yaml

    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ParamsError(f"--set {text}", ": expected KEY=VALUE (a YAML value)")
    if not raw.strip():
        raise ParamsError(f"--set {text}", ": no value after '='; write KEY=VALUE (a YAML value)")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ParamsError(f"--set {text}", f": the value is not valid YAML: {str(e).splitlines()[0]}") from None
    owner = next((s for s in sorted(sections, key=len, reverse=True) if key == s or key.startswith(s + ".")), None)
    full = key if owner else f"{sections[0]}.{key}"
    parts = full.split(".")
    node = doc
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ParamsError(f"--set {text}", f": {'.'.join(parts[:i + 1])} is not a section")
        node = nxt
    node[parts[-1]] = value


def load(path: str | Path, sections: Mapping[str, type[Params]], overrides: Sequence[str] = ()) -> dict[str, Params]:
    """The named sections of params file ``path`` as their dataclasses, with ``--set`` overrides
    (keys relative to the first section, or dotted from any of them); ParamsError otherwise."""
    doc = read_params(path)
    for text in overrides:
        try:
            _apply_override(doc, text, list(sections))
        except ParamsError as e:
            raise ParamsError(e.key, e.problem, str(path)) from None
    out = {}
    for key, cls in sections.items():
        if key not in SECTIONS:
            raise KeyError(f"{key!r} is not a params.yaml section (tasks.config.SECTIONS)")
        raw = section_values(doc, key)
        try:
            if not isinstance(raw, Mapping):
                raise bad_value(key, raw, f"a mapping of {cls.__name__} settings")
            out[key] = cls.from_mapping(raw, key)
        except ParamsError as e:
            raise ParamsError(e.key, e.problem, str(path)) from None
    return out


def section_class(key: str) -> type[Params]:
    module, _, name = SECTIONS[key].partition(":")
    return getattr(importlib.import_module(module), name)


def check_sections(path: str | Path, keys: Sequence[str]) -> dict[str, Params]:
    """The file's shape and sections ``keys`` validated (each class imported): what the flow checks
    before its first stage."""
    return load(path, {key: section_class(key) for key in keys})


def check_file(path: str | Path) -> dict[str, Params]:
    """Every section of ``path`` validated."""
    return check_sections(path, list(SECTIONS))


def render_defaults() -> str:
    """params.yaml text holding every section's defaults, each key with its help as a comment."""
    import yaml

    def scalar(v: Any) -> str:
        return yaml.safe_dump(v, default_flow_style=True, width=10**6, sort_keys=False).strip().removesuffix("\n...").strip()

    def emit(obj: Params, indent: int, out: list[str]) -> None:
        helps = obj.help()
        for f in dataclasses.fields(obj):
            v, pad = getattr(obj, f.name), "  " * indent
            if isinstance(v, Params):
                out.append(commented(f"{pad}{f.name}:", helps[f.name]))
                emit(v, indent + 1, out)
            elif isinstance(v, dict) and v and all(isinstance(x, Params) for x in v.values()):
                out.append(commented(f"{pad}{f.name}:", helps[f.name]))
                out += [f"{pad}  {name}: {scalar(x.to_dict())}" for name, x in v.items()]
            else:
                out.append(commented(f"{pad}{f.name}: {scalar(Params.to_dict_value(v))}", helps[f.name]))

    def commented(line: str, text: str) -> str:
        return f"{line}{' ' * max(1, 36 - len(line))}# {text}"

    lines = ["# Every setting of the pipeline, one section per stage (tasks.config.SECTIONS), written out by",
             "# `python -m tasks.config --write-defaults params.yaml` from the dataclasses that hold the",
             "# defaults and each field's allowed values. `python -m tasks.config --show SECTION` explains one."]
    groups_done: set[str] = set()
    for key in SECTIONS:
        cls = section_class(key)
        lines.append("")
        head, _, leaf = key.rpartition(".")
        if head and head not in groups_done:
            lines.append(f"{head}:")
            groups_done.add(head)
        indent = 1 if head else 0
        doc = (cls.__doc__ or "").strip().splitlines()
        lines += [f"{'  ' * indent}# {d.strip().replace('``', '')}" for d in doc if d.strip()]
        lines.append(f"{'  ' * indent}{leaf}:")
        emit(cls(), indent + 1, lines)
    return "\n".join(lines) + "\n"


def exits_cleanly(main):
    """Decorate a ``main``: a ``UsageError`` ends the command with its one-line message, status 2."""

    @functools.wraps(main)
    def wrapped(argv=None):
        try:
            return main(argv)
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapped


def stage_parser(doc: str, inputs: Mapping[str, str] | None = None, *, prog: str | None = None) -> argparse.ArgumentParser:
    """The command line every stage shares: ``--params FILE``, ``--set KEY=VALUE`` (repeatable),
    ``--output DIR``, and one required flag per named input (``inputs``: name -> help)."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, help_text in (inputs or {}).items():
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, help=help_text)
    ap.add_argument("--output", required=True, help="where the stage writes (a directory, or a file where noted)")
    ap.add_argument("--params", default="params.yaml", help="the params file (default: params.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting (YAML value); KEY relative to the stage's section or dotted")
    return ap


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tasks.config", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--check", action="store_true", help="validate every section")
    ap.add_argument("--show", metavar="SECTION", help="print a section's fields, values and help")
    ap.add_argument("--write-defaults", metavar="FILE", help="write every section's defaults (a fresh params file)")
    args = ap.parse_args(argv)
    if args.write_defaults:
        Path(args.write_defaults).write_text(render_defaults())
        print(f"wrote {args.write_defaults}")
        return
    if args.show:
        if args.show not in SECTIONS:
            raise ParamsError(args.show, f": unknown section; known: {', '.join(SECTIONS)}")
        cls = section_class(args.show)
        values = load(args.params, {args.show: cls})[args.show].to_dict()
        for name, text in cls.help().items():
            print(f"{args.show}.{name} = {values[name]!r}\n    {text}")
    if args.check or not args.show:
        check_file(args.params)
        print(f"{args.params}: {len(SECTIONS)} sections valid")


if __name__ == "__main__":
    from tasks import config  # the module itself, not __main__: its Params is the one sections derive from

    config.main()
