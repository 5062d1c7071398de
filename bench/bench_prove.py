"""Time every ``devdax prove`` obligation per profile and print a table (and the totals).

    .venv/bin/python bench/bench_prove.py [--profile P ...] [--timeout S] [--markdown]

The design target: every obligation of a profile under 60 s in total on 2 cores. Results are recorded
by hand in bench/RESULTS.md; this script only measures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from devdax.proofs import runner
from devdax.proofs.obligations import obligations_for
from devdax.spec.profiles import PROFILES


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench_prove")
    p.add_argument("--profile", nargs="+", default=sorted(PROFILES))
    p.add_argument("--timeout", type=float, default=runner.DEFAULT_TIMEOUT)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    rows: dict[str, dict[str, runner.Result]] = {}
    totals: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for prof in args.profile:
        # CPU seconds beside wall seconds: the machine is shared, wall time depends on the others' load
        start = time.process_time()
        results = runner.run(obligations_for(prof), args.timeout)
        cpu[prof] = time.process_time() - start
        totals[prof] = sum(r.verdict.seconds for r in results)
        for r in results:
            rows.setdefault(r.obligation.name, {})[prof] = r
    word = {runner.Status.PROVED: "ok", runner.Status.VIOLATED: "FAIL", runner.Status.UNKNOWN: "UNKNOWN"}
    name_w = max(len(n) for n in rows)
    print(f"# devdax prove timings: python {platform.python_version()}, {os.cpu_count()} cpus, "
          f"timeout {args.timeout:g}s")
    sep = " | " if args.markdown else "  "
    head = sep.join([f"{'obligation':<{name_w}}", *(f"{p:>16}" for p in args.profile)])
    print(f"| {head} |" if args.markdown else head)
    if args.markdown:
        print("|" + "|".join("-" * (len(c) + 2) for c in head.split(" | ")) + "|")
    for name, by in rows.items():
        cells = []
        for prof in args.profile:
            r = by.get(prof)
            cells.append(f"{'-':>16}" if r is None else
                         f"{word[r.verdict.status] + f' {r.verdict.seconds:7.3f}s':>16}")
        line = sep.join([f"{name:<{name_w}}", *cells])
        print(f"| {line} |" if args.markdown else line)
    tot = sep.join([f"{'total':<{name_w}}", *(f"{totals[p]:15.2f}s" for p in args.profile)])
    print(f"| {tot} |" if args.markdown else tot)
    cpus = sep.join([f"{'total CPU':<{name_w}}", *(f"{cpu[p]:15.2f}s" for p in args.profile)])
    print(f"| {cpus} |" if args.markdown else cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
