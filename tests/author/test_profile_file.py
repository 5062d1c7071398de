"""Profile files (docs/profile-files.md): a driver change checked without editing devdax. The worked
example (docs/examples/unbind-no-grace.toml) is caught against its base, its fix passes, a bad file
is one usage line naming the key, and every snippet printed for a file replays in a fresh process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from devdax import cli
from devdax.model.render import extract_snippets
from devdax.profile_file import ProfileFileError, is_profile_file, parse

ROOT = Path(__file__).resolve().parents[2]
BAD = "docs/examples/unbind-no-grace.toml"
FIXED = "docs/examples/unbind-no-grace-fixed.toml"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def assert_replays(snippet: str, test: Path, cwd: Path) -> None:
    """A pasted snippet passes as a test file of its own, in a fresh pytest."""
    test.write_text(snippet)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_worked_example_is_caught_as_new_violations_against_its_base() -> None:
    code, out, _ = run("check", "--profile", BAD)
    assert code == 1
    assert (
        "against base modern: 2 new violations (no_entry_after_kill, no_map_of_dead_device), 0 findings fixed"
        in out
    )
    assert f"replay: devdax check --profile {BAD}" in out
    assert "documented findings (6), reproduced as expected" in out


def test_its_fix_passes_with_exactly_the_base_findings() -> None:
    code, out, _ = run("check", "--profile", FIXED, "--quiet")
    assert code == 0, out
    assert "against base modern: 0 new violations, 0 findings fixed" in out
    assert "verdict: pass (exactly the documented findings)" in out
    code, out, _ = run("check", "--profile", FIXED, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["result"] == "pass" and doc["profile"] == FIXED
    assert doc["against_base"] == {
        "base": "modern",
        "new_violations": [],
        "documented_by_file": [],
        "findings_fixed": [],
        "declared_fixed": [],
    }


def test_every_snippet_names_the_file_and_replays_in_a_fresh_process(tmp_path: Path) -> None:
    _, out, _ = run("check", "--profile", BAD)
    snippets = extract_snippets(out)
    assert len(snippets) == 2
    for i, code in enumerate(snippets):
        assert f'load_profile("{BAD}")' in code
        assert_replays(code, tmp_path / f"test_pasted_{i}.py", ROOT)


def test_declared_findings_and_fixes_change_the_verdict(tmp_path: Path) -> None:
    f = tmp_path / "accepted.toml"
    f.write_text(
        'base = "modern"\nfixed = []\n[programs]\n'
        'unbind = ["clear_alive", "unmap_mapping_range!", "cdev_del"]\n'
        '[findings]\nno_entry_after_kill = "accepted for the test"\n'
        'no_map_of_dead_device = "accepted for the test"\n'
    )
    code, out, _ = run("check", "--profile", str(f), "--quiet")
    assert code == 0, out
    assert "2 new violations (no_entry_after_kill [documented by the file]" in out


def test_a_finding_the_change_fixes_is_counted(tmp_path: Path) -> None:
    """modern whose dax_open never stores a NULL private_data: M21 (F1) is gone, and the file says so;
    without saying so the drift rule fails the run, as it does for a stock profile."""
    f = tmp_path / "f1.toml"
    f.write_text(
        'base = "modern"\nfixed = ["no_null_deref"]\n[switches]\nopen_private_null_when_dead = false\n'
    )
    code, out, _ = run("check", "--profile", str(f), "--quiet")
    assert "0 new violations, 1 finding fixed (no_null_deref)" in out
    assert code == 0, out
    f.write_text('base = "modern"\n[switches]\nopen_private_null_when_dead = false\n')
    code, out, _ = run("check", "--profile", str(f), "--quiet")
    assert code == 1
    assert "documented finding no longer reproduced: no_null_deref" in out


def test_a_new_step_runs_as_the_step_it_guards(tmp_path: Path) -> None:
    f = tmp_path / "guard.toml"
    f.write_text(
        'base = "modern"\n[steps.dax_open_check]\nguards = "cdev_add"\nwhy = "refuse open until run_dax"\n'
        '[programs]\nbind = ["dax_open_check", "run_dax"]\n'
    )
    pf = parse(str(f), f.read_text())
    assert pf.profile.bind == ("cdev_add", "run_dax")
    assert pf.new_steps["dax_open_check"].relation == "guards"
    code, out, _ = run("check", "--profile", str(f), "--max-states", "50")
    assert code == 0, out
    assert "  step dax_open_check: not in spec/admin.py; runs as cdev_add, which it guards" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'base = "v5"',
            "base: expected one of v4.7, v4.10, modern, linux-6.1, linux-6.12, linux-7.2, got 'v5'",
        ),
        ('base = "modern"\nbsae = 1', "bsae: unknown key; expected one of base, summary, fixed"),
        (
            'base = "modern"\n[switches]\nread_lock = "mutex"',
            "switches.read_lock: expected one of rcu, srcu, got 'mutex'",
        ),
        (
            'base = "modern"\n[switches]\nbind_cycles = 1',
            "switches.bind_cycles: expected true or false, got 1",
        ),
        (
            'base = "modern"\n[programs]\nunbind = ["clear_alive", "nap"]',
            "programs.unbind: unknown step 'nap'",
        ),
        (
            'base = "modern"\n[programs]\nprobe = []',
            "programs.probe: unknown program; expected one of create",
        ),
        ('base = "modern"\n[findings]\nno_fun = "x"', "findings.no_fun: unknown invariant; expected one of"),
        ('base = "v4.10"\nfixed = ["no_null_deref"]', "fixed: expected a list of entries_naturally_aligned"),
        ('base = "modern"\n[fault_rules]\nfallback = "no"', "fault_rules.fallback: expected one of fallback"),
        ('base = "modern"\n[config]\nfiles = -1', "config: files: expected a positive integer, got -1"),
        ("base = ", "syntax: "),
    ],
)
def test_a_bad_file_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ProfileFileError):
        parse(str(f), text)
    code, out, err = run("check", "--profile", str(f))
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"devdax: error: --profile: {f}: ")
    assert message in err, err


def test_a_missing_file_is_a_usage_line() -> None:
    code, _, err = run("check", "--profile", "./nowhere.toml")
    assert code == 2
    assert err == "devdax: error: --profile: ./nowhere.toml: file: No such file or directory\n"


def test_what_counts_as_a_file() -> None:
    assert is_profile_file("x.toml") and is_profile_file("dir/x") and not is_profile_file("modern")


def test_prove_takes_a_file_and_compares_with_the_base() -> None:
    code, out, _ = run("prove", "--profile", BAD, "--only", "proto_dead_quiesced", "life_no_null_deref")
    assert code == 1
    assert out.startswith(f"devdax prove: profile {BAD}\n")
    assert "  finding " in out and "  FAIL " in out
    assert "against base modern: 1 new violation (proto_dead_quiesced), 0 findings fixed" in out
    code, out, _ = run("prove", "--profile", FIXED, "--only", "proto_dead_quiesced")
    assert code == 0, out


def test_prove_a_file_rejects_a_variant() -> None:
    code, _, err = run("prove", "--profile", BAD, "--variant", "M21")
    assert code == 2 and err.count("\n") == 1


def test_scenario_run_takes_a_file_on_the_spec_backend_only() -> None:
    scen = "tests/scenarios/f1_open_after_unbind_null_private.json"
    done = subprocess.run(
        [sys.executable, "-m", "devdax.cli", "scenario", "run", "--profile", BAD, scen],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert '"summary"' in done.stdout.splitlines()[-1]
    done = subprocess.run(
        [sys.executable, "-m", "devdax.cli", "scenario", "run", "--backend", "impl", "--profile", BAD, scen],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == "devdax scenario: error: --profile: a profile file runs on the spec backend only, not impl\n"
    )


def test_a_prove_counterexample_of_a_file_replays(tmp_path: Path) -> None:
    """`prove --bmc` prints its counterexamples indented under the obligation: their snippets load
    the file too."""
    f = tmp_path / "nosync.toml"
    f.write_text(
        'base = "v4.10"\n[programs]\n'
        'remove = ["clear_alive", "unmap_mapping_range!", "cdev_del", "device_del", "put_device"]\n'
    )
    code, out, _ = run("prove", "--profile", str(f), "--bmc", "10", "--only", "bmc_depth10")
    assert code == 1
    assert "against base v4.10: 1 new violation (bmc_depth10)" in out
    (snippet,) = extract_snippets("\n".join(ln.removeprefix(" " * 8) for ln in out.splitlines()))
    assert f'load_profile("{f}")' in snippet
    assert_replays(snippet, tmp_path / "test_pasted.py", tmp_path)


def test_the_replay_command_carries_the_bounds_that_were_checked() -> None:
    """A newcomer who widened the bounds to reach a bug must get a replay line that reaches it."""
    _, out, _ = run("check", "--profile", BAD, "--files", "1", "--cpus", "2", "--race")
    assert f"replay: devdax check --profile {BAD} --files 1 --cpus 2 --race\n" in out
    _, out, _ = run("check", "--profile", FIXED)
    assert f"replay: devdax check --profile {FIXED}\n" in out
