"""python -m bench.sandbox_overhead --runs 20 --output bench/results/sandbox_overhead.md

Wall time per sandboxed run of the local backend (``tasks.envs.sandbox``): ``run_command(["/bin/true"])``
and ``run("print(1)")``, median and 90th percentile of ``--runs`` runs each, with the run's cgroup
and without (``envs.sandbox.cgroups``). A code reward runs one sandbox per test case, so this is
the fixed cost under every code and SWE reward. Prints a markdown table and writes it to
``--output`` with the load average, which matters on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from tasks.envs.sandbox import Limits, run, run_command


def timings(call, n: int, desc: str) -> list[float]:
    out = []
    for _ in tqdm(range(n), desc=desc, unit="run", leave=False):
        t0 = time.perf_counter()
        r = call()
        out.append(time.perf_counter() - t0)
        if r.status != "ok":
            raise RuntimeError(f"{desc}: status {r.status}: {r.stderr[-300:]}")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="python -m bench.sandbox_overhead")
    ap.add_argument("--runs", type=int, default=20, help="runs per case")
    ap.add_argument("--output", type=Path, help="markdown file for the table")
    args = ap.parse_args(argv)
    from tasks.envs.sandbox.local import cgroup_support

    support = cgroup_support()
    rows = []
    for cgroups in (True, False):
        lim = dataclasses.replace(Limits(), cgroups=cgroups)
        label = f"cgroup {support.kind}" if cgroups and support.kind else "no cgroup"
        for name, call in ((f'run_command(["/bin/true"])', lambda: run_command(["/bin/true"], limits=lim)),
                           ('run("print(1)")', lambda: run("print(1)", limits=lim))):
            t = sorted(timings(call, args.runs, f"{name}, {label}"))
            rows.append((name, label, statistics.median(t), t[int(0.9 * (len(t) - 1))]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"Sandbox overhead, local backend, {args.runs} runs per case (commit {commit}, uid {os.geteuid()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores, Python {sys.version.split()[0]}).",
        f"cgroup_support(): {support.kind}: {support.why}",
        "",
        "| call | cgroup | median s | p90 s |",
        "|---|---|---|---|",
        *[f"| `{name}` | {label} | {med:.3f} | {p90:.3f} |" for name, label, med, p90 in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
