"""The short run of the CLI fuzz, in every `make test`: random and hostile command lines over every
subcommand, with random and hostile scenario files (tests/fuzz/cli_fuzz.py has the oracle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from . import harness
from .cli_fuzz import argv, judge, run, scenario, write_pool

EXAMPLES = int(os.environ.get("DEVDAX_FUZZ_EXAMPLES", "40"))
DEVDAX = Path(sys.executable).parent / "devdax"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("cli-fuzz")
    return folder, write_pool(folder)


def test_cli_fuzz_short_run(pool: tuple[Path, list[str]]) -> None:
    folder, files = pool
    generated = folder / "generated.json"
    tally = harness.Tally(strict=True)
    harness.install(tally)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=tuple(p for p in Phase if p != Phase.shrink or os.environ.get("DEVDAX_FUZZ_SHRINK")),
    )
    @given(data=st.data())
    def one_command_line(data: st.DataObject) -> None:
        generated.write_text(json.dumps(data.draw(scenario(), label="scenario")))
        args = data.draw(argv(files, str(generated)), label="argv")
        before = harness.snapshot()
        judge(run(args))
        for column, what in harness.leaks(before).items():
            tally.fail(column, f"devdax {' '.join(args)}: {what}")

    with harness.watchdog():
        one_command_line()
    assert tally.calls == EXAMPLES or tally.calls > 0


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--cpus", str(10**20)],
        ["scenario", "run", "{pool}/deep.json"],
        ["scenario", "run", "--backend", "impl", "{pool}/broken.json", "{pool}/opens40.json"],
        ["scenario", "diff", "--backends", ",", "{pool}/binary.json"],
        ["conformance", "--recorded", "--kernel", "9", "{pool}/list.json"],
        ["explain", "no-such-thing"],
    ],
)
def test_the_installed_command_never_prints_a_traceback(
    pool: tuple[Path, list[str]], args: list[str]
) -> None:
    """The process's own exit: what a shell sees, without main's caller in between."""
    folder, _ = pool
    argv_ = [a.replace("{pool}", str(folder)) for a in args]
    env = {k: v for k, v in os.environ.items() if k != "DEVDAX_TRACEBACK"}
    p = subprocess.run([str(DEVDAX), *argv_], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode in (0, 1, 2, 3), p.stderr
    assert "Traceback" not in p.stderr, p.stderr
