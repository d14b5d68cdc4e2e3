"""python -m tasks.envs.swe.build --projects data/swe/projects --output data/swe/instances.jsonl [--params params.yaml]

Builds the SWE instance set: for every repository under ``data/swe/projects`` (one module at the
root, unittest tests under ``tests/``), seeded one-token mutations of the module are tried in the
sandbox; a mutation is kept when at least one test fails with it and the reverse diff makes every
test pass again. Pairs of kept mutations in two different functions make the two-bug instances.
Deterministic for a given seed: running it twice writes the same file.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from tqdm import tqdm

from tasks.config import exits_cleanly, load, stage_parser
from tasks.envs.params import EnvParams
from tasks.envs.swe.mutate import Mutation, mutations, unified_diff
from tasks.envs.swe.task import evaluate_patch, outcome, project_files


def _module(files: dict[str, str], project: str) -> str:
    roots = [p for p in files if "/" not in p]
    if len(roots) != 1:
        raise ValueError(f"SWE project {project!r} must have exactly one module at its root, found {roots}")
    return roots[0]


def _instance(project: str, files: dict[str, str], module: str, muts: list[Mutation], envs: EnvParams) -> dict | None:
    """The instance for these mutations, or None when no test catches them or the fix fails."""
    source = files[module]
    buggy = source
    for m in sorted(muts, key=lambda m: (m.line, m.start), reverse=True):  # right to left keeps columns
        buggy = m.apply(buggy)
    report = evaluate_patch(files, unified_diff(module, source, buggy), envs.swe, envs.sandbox)
    if report["status"] != "ran" or not report["failed"]:
        return None
    tests = report["tests"]
    fix = unified_diff(module, buggy, source)
    fixed = evaluate_patch({**files, module: buggy}, fix, envs.swe, envs.sandbox)
    if outcome(fixed, tests, []) != "passed":
        return None
    failing = sorted(report["failed"])
    key = "+".join(f"L{m.line}C{m.start}={m.new}" for m in muts)
    return {"id": f"{project}:{key}", "project": project, "module": module,
            "functions": [m.function for m in muts], "descriptions": [m.description for m in muts],
            "buggy_source": buggy, "fix_diff": fix, "failing": failing,
            "passing": sorted(set(tests) - set(failing)), "messages": report["failed"]}


def build(projects_dir: Path, envs: EnvParams) -> list[dict]:
    """The instances of every project under ``projects_dir`` (counts and seed: ``envs.swe.build``)."""
    seed = envs.swe.build.seed
    singles_per_project, doubles_per_project = envs.swe.build.singles_per_project, envs.swe.build.doubles_per_project
    out = []
    for project_dir in tqdm(sorted(p for p in projects_dir.iterdir() if p.is_dir()), desc="swe projects"):
        project = project_dir.name
        files = project_files(project)
        module = _module(files, project)
        candidates = mutations(files[module])
        random.Random(f"swe-build|{seed}|{project}").shuffle(candidates)
        singles: list[tuple[Mutation, dict]] = []
        for m in candidates:
            if len(singles) == singles_per_project:
                break
            if any(m.line == s.line for s, _ in singles):  # one bug per line keeps instances distinct
                continue
            inst = _instance(project, files, module, [m], envs)
            if inst:
                singles.append((m, inst))
        out.extend(inst for _, inst in singles)
        pairs = [(a, b) for (a, _), (b, _) in itertools.combinations(singles, 2) if a.function != b.function]
        random.Random(f"swe-build-pairs|{seed}|{project}").shuffle(pairs)
        doubles = 0
        for a, b in pairs:
            if doubles == doubles_per_project:
                break
            inst = _instance(project, files, module, sorted([a, b], key=lambda m: (m.line, m.start)), envs)
            if inst:
                out.append(inst)
                doubles += 1
    return out


PARAMS = {"envs": EnvParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, {"projects": "folder of repositories (one module at the root, tests/ beside it)"},
                      prog="python -m tasks.envs.swe.build")
    args = ap.parse_args(argv)
    instances = build(Path(args.projects), load(args.params, PARAMS, args.set)["envs"])
    with open(args.output, "w") as f:
        for inst in instances:
            f.write(json.dumps(inst, sort_keys=True) + "\n")
    singles = sum(len(i["functions"]) == 1 for i in instances)
    print(f"wrote {len(instances)} instances ({singles} one-bug, {len(instances) - singles} two-bug) to {args.output}")


if __name__ == "__main__":
    main()
