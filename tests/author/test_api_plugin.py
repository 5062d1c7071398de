"""devdax.api and the pytest plugin as a driver's own test suite uses them: from a directory outside
the repository, through the entry point the installed package registers (pyproject.toml pytest11),
run by the venv's pytest in a subprocess. A failing assertion must show devdax's counterexample."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devdax import api

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"

DRIVER_TESTS = """
def test_the_fix_passes(devdax):
    devdax.assert_passes("unbind-no-grace-fixed.toml")


def test_the_change_is_caught(devdax):
    report = devdax.assert_caught("no_entry_after_kill", "unbind-no-grace.toml")
    assert "load_profile(" in report.counterexample("no_entry_after_kill")


def test_a_variant_is_caught(devdax):
    devdax.assert_caught("no_entry_after_kill", variant="no-synchronize")


def test_the_change_passes(devdax):
    devdax.assert_passes("unbind-no-grace.toml")
"""


def test_the_plugin_works_from_a_test_suite_outside_the_repository(tmp_path: Path) -> None:
    for name in ("unbind-no-grace.toml", "unbind-no-grace-fixed.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    (tmp_path / "test_driver.py").write_text(DRIVER_TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "test_driver.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 failed, 3 passed" in out, out
    # the failure message is devdax's report, not a Python traceback into devdax
    failure = out.split("test_the_change_passes", 1)[1]
    assert "devdax check --profile unbind-no-grace.toml: does not pass" in failure
    assert "violation: no_entry_after_kill" in failure
    assert 'load_profile("unbind-no-grace.toml")' in failure
    assert "against base modern: 2 new violations" in failure
    assert "devdax/api.py" not in failure


def test_api_check_and_replay_agree() -> None:
    pf = api.load_profile(str(EXAMPLES / "unbind-no-grace.toml"))
    report = api.check(pf)
    assert not report.passed and report.caught("no_entry_after_kill")
    steps = [(s.action, s.args, s.outcome) for s in report.result.violations["no_entry_after_kill"].trace]
    states = api.replay(report.config, steps)
    assert len(states) == len(steps) + 1


def test_api_bad_argument_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="--cpus: expected a non-negative integer"):
        api.check("v4.10", cpus=-1)
    with pytest.raises(api.ProfileFileError, match="build-system: unknown key; expected one of base, "):
        api.load_profile(str(ROOT / "pyproject.toml"))


def test_api_prove_and_scenario() -> None:
    report = api.prove(str(EXAMPLES / "unbind-no-grace.toml"), only=["proto_dead_quiesced"])
    assert report.exit_code == 1 and report.statuses == {"proto_dead_quiesced": "violated"}
    assert api.prove(variant="M21", only=["life_no_null_deref"]).statuses == {
        "life_no_null_deref": "violated"
    }
    sc = api.run_scenario(ROOT / "tests/scenarios/s01_private_rdonly_einval.json")
    assert sc.passed and sc.outcomes == sc.expect
