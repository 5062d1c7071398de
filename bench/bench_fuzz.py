"""The long fuzz run (`make fuzz`): the machine and oracle of tests/fuzz for at least 10^5 calls.

    .venv/bin/python -m bench.bench_fuzz [--calls N] [--steps S] [--chunk K] [--cli M]

Prints one table: calls by outcome (ok, SIGBUS, SIGSEGV, each errno, ValueError, KernelBug, the
CLI's exit statuses), then every failure column (foreign exceptions, unnamed ValueErrors, stale
accesses, lost bytes, leaks, hangs, crashed chunks) and the first reproductions of any failure.

Why chunks in child processes: the watchdog ends a hung call by killing its process (a hung touch
never returns to Python), so each chunk of examples runs in a child that writes its tally after
every example; a child killed by SIGALRM is counted as a hang and the run goes on with the next.
The exit status is 1 if any failure column is not zero.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from tests.fuzz import harness
from tests.fuzz.api_machine import ApiMachine
from tests.fuzz.cli_fuzz import CLI_FAILURES, argv, judge, run, scenario, write_pool

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (*harness.FAILURES, *harness.LEAKS, *CLI_FAILURES, "hang", "crash")


def _dump(t: harness.Tally, out: str) -> None:
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(
            {
                "calls": t.calls,
                "outcomes": t.outcomes,
                "failures": t.failures,
                "examples": t.examples,
                "by_op": t.by_op,
            },
            f,
        )
    os.replace(tmp, out)


def _generate_only(examples: int, steps: int = 50) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def child_api(examples: int, steps: int, out: str) -> None:
    t = harness.Tally(strict=False)
    harness.install(t)

    class Counted(ApiMachine):
        def teardown(self) -> None:
            try:
                super().teardown()
            finally:
                _dump(t, out)

    with harness.watchdog():
        run_state_machine_as_test(Counted, settings=_generate_only(examples, steps))


def child_cli(examples: int, out: str) -> None:
    t = harness.Tally(strict=False)
    harness.install(t)
    with tempfile.TemporaryDirectory(prefix="devdax-cli-fuzz-") as d:
        folder = Path(d)
        pool = write_pool(folder)
        generated = folder / "generated.json"

        @_generate_only(examples)
        @given(data=st.data())
        def one(data: st.DataObject) -> None:
            generated.write_text(json.dumps(data.draw(scenario())))
            args = data.draw(argv(pool, str(generated)))
            before = harness.snapshot()
            judge(run(args))
            for column, what in harness.leaks(before).items():
                t.fail(column, f"devdax {' '.join(args)}: {what}")
            if t.calls % 50 == 0:
                _dump(t, out)

        with harness.watchdog():
            one()
    _dump(t, out)


def _spawn(mode: str, n: int, steps: int, total: dict[str, Counter[str]], examples: list[str]) -> int:
    """Run one chunk in a child; fold its tally into ``total``; return its calls."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    os.unlink(out)
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_fuzz",
        "--child",
        mode,
        "--chunk",
        str(n),
        "--steps",
        str(steps),
    ]
    p = subprocess.run([*cmd, "--out", out], cwd=ROOT, capture_output=True, text=True)
    got: dict[str, Any] = {}
    if os.path.exists(out):
        with open(out) as fh:
            got = json.load(fh)
        os.unlink(out)
    for key in ("outcomes", "failures", "by_op"):
        total[key].update(dict(got.get(key, {})))
    examples.extend(str(e) for e in got.get("examples", []))
    if p.returncode == -signal.SIGALRM:
        total["failures"]["hang"] += 1
        examples.append(f"hang ({mode} chunk): {p.stderr[-1500:]}")
    elif p.returncode != 0:
        total["failures"]["crash"] += 1
        examples.append(f"crash ({mode} chunk, exit {p.returncode}): {p.stderr[-1500:]}")
    calls = got.get("calls", 0)
    return calls if isinstance(calls, int) else 0


def main(args: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000, help="API calls to make at least")
    ap.add_argument("--steps", type=int, default=200, help="steps per example (one bus each)")
    ap.add_argument("--chunk", type=int, default=40, help="examples per child process")
    ap.add_argument("--cli", type=int, default=2000, help="CLI command lines")
    ap.add_argument("--child", choices=("api", "cli"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(args)
    if a.child == "api":
        child_api(a.chunk, a.steps, a.out)
        return 0
    if a.child == "cli":
        child_cli(a.chunk, a.out)
        return 0

    t0 = time.monotonic()
    total: dict[str, Counter[str]] = {"outcomes": Counter(), "failures": Counter(), "by_op": Counter()}
    examples: list[str] = []
    api = cli = 0
    while api < a.calls:
        api += _spawn("api", a.chunk, a.steps, total, examples)
        print(f"  api calls {api:,} ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    t_api = time.monotonic() - t0
    while cli < a.cli:
        cli += _spawn("cli", min(500, a.cli - cli), 0, total, examples)
    wall = time.monotonic() - t0

    print(
        f"devdax fuzz: {api + cli:,} calls in {wall:.0f} s wall ({api:,} API calls in {t_api:.0f} s, "
        f"{cli:,} CLI command lines), {platform.machine()}, nproc {os.cpu_count()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print("\noutcome            calls")
    for label, n in total["outcomes"].most_common():
        print(f"{label:<18} {n:>8,}")
    print("\nfailure            count")
    for column in COLUMNS:
        print(f"{column:<22} {total['failures'][column]:>4}")
    print("\ncalls by operation: " + ", ".join(f"{k} {v:,}" for k, v in total["by_op"].most_common()))
    for e in examples[:20]:
        print("\n" + e)
    return 1 if sum(total["failures"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
