"""python -m bench.sandbox_overhead --runs 20 --output bench/results/sandbox_overhead.md

Wall time per sandboxed run of the local backend (``tasks.envs.sandbox``): ``run_command(["/bin/true"])``
and ``run("print(1)")``, median and 90th percentile of ``--runs`` runs each, with the run's cgroup
and without (``envs.sandbox.cgroups``), the four cases interleaved, and the CPU time each run costs
(caller and children, mean). A code reward runs one sandbox per test case, so this is the fixed cost
under every code and SWE reward. Then the throughput of ``run("print(1)")`` from 1, 2 and 4 threads at
once (the stages score on ``threads`` threads). Prints a markdown table and writes it to ``--output``
with the load average, which matters on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from tasks.envs.sandbox import Limits, run, run_command


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children, user and system."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def timings(cases: dict[tuple[str, str], object], n: int) -> dict[tuple[str, str], tuple[list[float], float]]:
    """Seconds per call of each case and its mean CPU seconds, the cases interleaved (one of each per
    round), so a change in the machine's load during the benchmark falls on all of them alike."""
    out: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    cpu = dict.fromkeys(cases, 0.0)
    for _ in tqdm(range(n), desc="sandbox runs", unit="round"):
        for key, call in cases.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            r = call()
            out[key].append(time.perf_counter() - t0)
            cpu[key] += cpu_seconds() - c0
            if r.status != "ok":
                raise RuntimeError(f"{key}: status {r.status}: {r.stderr[-300:]}")
    return {key: (out[key], cpu[key] / n) for key in cases}


def throughput(call, threads: int, n: int) -> float:
    """Runs per second of ``n`` calls made from ``threads`` threads at once."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _: call(), range(n)))
    if any(r.status != "ok" for r in results):
        raise RuntimeError("a run failed during the throughput measurement")
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], prog="python -m bench.sandbox_overhead")
    ap.add_argument("--runs", type=int, default=20, help="runs per case")
    ap.add_argument("--output", type=Path, help="markdown file for the table")
    args = ap.parse_args(argv)
    from tasks.envs.sandbox.local import cgroup_support

    support = cgroup_support()
    cases = {}
    for cgroups in (True, False):
        lim = dataclasses.replace(Limits(), cgroups=cgroups)
        label = f"cgroup {support.kind}" if cgroups and support.kind else "no cgroup"
        cases[('run_command(["/bin/true"])', label)] = lambda lim=lim: run_command(["/bin/true"], limits=lim)
        cases[('run("print(1)")', label)] = lambda lim=lim: run("print(1)", limits=lim)
    rows = []
    for (name, label), (t, cpu) in timings(cases, args.runs).items():
        t = sorted(t)
        rows.append((name, label, statistics.median(t), t[int(0.9 * (len(t) - 1))], cpu))
    print_one = lambda: run("print(1)")  # noqa: E731  (the default limits: cgroup where there is one)
    rates = {threads: throughput(print_one, threads, 2 * args.runs) for threads in (1, 2, 4)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"Sandbox overhead, local backend, {args.runs} runs per case (commit {commit}, uid {os.geteuid()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores, Python {sys.version.split()[0]}).",
        f"cgroup_support(): {support.kind}: {support.why}",
        "",
        "| call | cgroup | median s | p90 s | CPU s a run |",
        "|---|---|---|---|---|",
        *[f"| `{name}` | {label} | {med:.3f} | {p90:.3f} | {cpu:.3f} |" for name, label, med, p90, cpu in rows],
        "",
        f"`run(\"print(1)\")` from several threads at once ({2 * args.runs} runs each):",
        "",
        "| threads | runs/s |",
        "|---|---|",
        *[f"| {threads} | {rate:.1f} |" for threads, rate in rates.items()],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
