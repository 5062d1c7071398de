"""The spec's prediction agrees with every shipped scenario's expectations.

The expectations were written from the research notes (ndctl, PMDK, kernel source), not from the
spec, so agreement here is evidence that the spec says what real devices do."""

from __future__ import annotations

from pathlib import Path

import pytest

from devdax.scenario import load_all
from devdax.scenario.cli import main
from devdax.scenario.spec_backend import SpecBackend

# files without expect (f*, k*) are judged against the kernel recordings: test_kernel_recordings.py
SCENARIOS = [s for s in load_all(Path(__file__).parent.parent / "scenarios") if s.expect is not None]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[Path(s.file).stem for s in SCENARIOS])
def test_spec_matches_expectations(sc: object) -> None:
    from devdax.scenario.format import Scenario

    assert isinstance(sc, Scenario) and sc.expect is not None
    assert SpecBackend().run(sc) == list(sc.expect)


def test_at_least_thirty_scenarios() -> None:
    assert len(SCENARIOS) >= 30


def test_cli_run_spec(capsys: pytest.CaptureFixture[str]) -> None:
    f = str(Path(__file__).parent.parent / "scenarios" / "s01_private_rdonly_einval.json")
    assert main(["run", "--backend", "spec", f]) == 0
    out = capsys.readouterr().out.splitlines()
    assert '"outcome": "EINVAL"' in out[1]


def test_cli_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--backend", "spec", "/nonexistent.json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
