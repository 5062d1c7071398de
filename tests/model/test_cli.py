"""The `devdax` command line: documented exit codes (0 pass, 1 violation, 2 usage error), one-line
usage errors that name the option, the --json/ITF shape, and `explain`. Runs main() in-process on
small configurations (the variants' own, or bounds given on the command line) to stay fast."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace

import pytest

from devdax import cli, summary
from devdax.spec.config import Config, MmapShape
from devdax.spec.profiles import PROFILES
from devdax.spec.variants import VARIANTS

SMALL = ["--files", "1", "--vmas", "1", "--cpus", "1", "--generations", "1"]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------ exit codes ----


def test_profile_pass_exits_0() -> None:
    code, out, err = run("check", "--profile", "v4.10", *SMALL)
    assert code == 0, out
    assert "all 20 invariants hold" in out or "invariants hold over" in out
    assert out.splitlines()[-2].startswith("verdict: pass")
    assert err == ""  # no progress line when stderr is not a tty


def test_findings_out_of_reach_with_other_bounds_are_a_note_not_a_failure() -> None:
    code, out, _ = run("check", "--profile", "v4.7", *SMALL)
    assert code == 0
    assert "documented finding not reached with these bounds: minor_unique" in out


def test_variant_violation_exits_1_with_counterexample() -> None:
    code, out, _ = run("check", "--variant", "no-synchronize")
    assert code == 1
    assert "violation: no_entry_after_kill  (docs/semantics.md#teardown" in out
    assert "   1. cpu0 fault_lock+fault_check(vma0 @0x7f0000200000, pmd)  -> ok/NOPAGE@pmd" in out
    assert "def test_no_synchronize_no_entry_after_kill() -> None:" in out


@pytest.mark.parametrize("name", ["M20", "M2", "no-synchronize"])
def test_snippets_of_unreduced_runs_replay_unreduced(name: str) -> None:
    """Without symmetry and reduction the trace names raw slots and single fault steps; its snippet
    must replay it the same way (and still break the invariant)."""
    from devdax.model.render import extract_snippets

    code, out, _ = run("check", "--variant", name, "--no-symmetry", "--no-reduction")
    assert code == 1
    snippets = extract_snippets(out)
    assert snippets and all("symmetry=False, reduce=False" in s for s in snippets)
    for src in snippets:
        ns: dict[str, object] = {}
        exec(compile(src, f"<{name} unreduced>", "exec"), ns)
        for k, f in ns.items():
            if k.startswith("test_") and callable(f):
                f()


def test_replay_from_json_steps() -> None:
    """The JSON's steps (lists where the trace had tuples) replay as they are."""
    from devdax.model.trace import replay
    from devdax.spec.variants import variant_config

    _, out, _ = run("check", "--variant", "M22", "--json")
    v = next(x for x in json.loads(out)["violations"] if x["invariant"] == "minor_unique")
    states = replay(variant_config(VARIANTS["M22"]), [tuple(s) for s in v["steps"]])
    assert len(states) == len(v["trace"]["states"])


def test_undocumented_violation_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """modern with M21's small configuration, and no_null_deref no longer documented."""
    small = Config(profile="modern", files=1, vmas=1, cpus=0, mmaps=(MmapShape("shared-rw"),))
    monkeypatch.setattr(cli, "default_config", lambda p: small)
    findings = dict(PROFILES["modern"].findings)
    del findings["no_null_deref"]
    monkeypatch.setitem(PROFILES, "modern", replace(PROFILES["modern"], findings=findings))
    code, out, _ = run("check", "--profile", "modern")
    assert code == 1
    assert "violation: no_null_deref" in out and "# --- paste as a test ---" in out
    assert "verdict: violation (1 undocumented" in out


def test_documented_finding_not_reproduced_in_default_config_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    small = Config(profile="v4.10", files=1, vmas=1, cpus=1)
    monkeypatch.setattr(cli, "default_config", lambda p: small)
    monkeypatch.setitem(PROFILES, "v4.10", replace(PROFILES["v4.10"], findings={"vmas_shared": "pretend"}))
    code, out, _ = run("check")
    assert code == 1
    assert "documented finding no longer reproduced: vmas_shared" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "--cpus", "x"], "devdax: error: --cpus: expected a non-negative integer, got 'x'"),
        (["check", "--cpus", "-1"], "devdax: error: --cpus: expected a non-negative integer, got '-1'"),
        (["check", "--align", "3M"], "devdax: error: --align: expected 4K, 2M or 1G, got '3M'"),
        (
            ["check", "--profile", "nope"],
            "devdax: error: --profile: expected one of v4.7, v4.10, modern, linux-6.1, linux-6.12, linux-7.2 "
            "or a profile file (.toml), "
            "got 'nope'",
        ),
        (
            ["check", "--variant", "nope"],
            "devdax: error: --variant: unknown variant 'nope'; `devdax variants` lists them",
        ),
        (
            ["check", "--first-fault", "huge"],
            "devdax: error: --first-fault: expected pte, pmd or pud, got 'huge'",
        ),
        (["check", "--ranges", "3"], "devdax: error: --ranges: a device of 2 units cannot have 3 ranges"),
        (["check", "--devices", "0"], "devdax: error: --devices: expected a positive integer, got 0"),
        (
            ["check", "--device-aligns", "2M,3M"],
            "devdax: error: --device-aligns: expected 4K, 2M or 1G, got '3M'",
        ),
        (["check", "--device-aligns", "2M,2M"], "devdax: error: --device-aligns: expected 1 entries, got 2"),
        (["check", "--devices", "9"], "devdax: error: --devices * --generations: at most 8 device instances"),
        (
            ["check", "--variant", "M22", "--profile", "modern"],
            "devdax: error: --profile: variant M22 applies to v4.10, not modern",
        ),
        (["check", "--frob"], "devdax: error: unrecognized arguments: --frob"),
        (["explain", "no_such_thing"], None),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], message: str | None) -> None:
    code, out, err = run(*argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("devdax: error: ")
    if message is not None:
        assert err.rstrip("\n") == message


# ---------------------------------------------------------------------------------- json ----


def test_json_has_verdict_statistics_and_itf_traces() -> None:
    code, out, err = run("check", "--variant", "unmap-before-synchronize", "--json")
    assert code == 1 and err == ""
    doc = json.loads(out)
    assert doc["result"] == "violation" and doc["variant"] == "unmap-before-synchronize"
    assert doc["profile"] == "v4.10" and doc["config"]["race"] is True
    for key in ("states", "transitions", "seconds", "states_per_second"):
        assert isinstance(doc[key], int | float)
    (v,) = [x for x in doc["violations"] if x["invariant"] == "no_entry_after_kill"]
    assert v["source"].startswith("docs/semantics.md#teardown") and "dax0 is killed" in v["message"]
    itf = v["trace"]
    assert itf["#meta"]["format"] == "ITF"
    assert itf["vars"] == [
        "regions",
        "devs",
        "files",
        "vmas",
        "entries",
        "cpus",
        "minors",
        "gp",
        "admin",
        "oops",
    ]
    states = itf["states"]
    assert [s["#meta"]["index"] for s in states] == list(range(len(states)))
    assert states[0]["#meta"]["action"] == "init"
    assert states[1]["#meta"] == {
        "index": 1,
        "action": "admin",
        "outcome": "ok",
        "args": ["remove", 0, "unmap_mapping_range", 0],
    }
    assert set(states[-1]) == {"#meta", *itf["vars"]}
    assert isinstance(states[-1]["entries"]["#set"], list) and states[-1]["entries"]["#set"]
    assert isinstance(states[-1]["devs"], list) and states[-1]["devs"][0]["dead"] is True


def test_itf_values() -> None:
    from devdax.model.itf import value

    assert value(2**60) == {"#bigint": str(2**60)}
    assert value(("probe", 0, 3)) == {"#tup": ["probe", 0, 3]}
    assert value(frozenset({2, 1})) == {"#set": [1, 2]}
    assert value((1, 2)) == [1, 2]


def test_json_profile_pass() -> None:
    code, out, _ = run("check", "--profile", "v4.10", *SMALL, "--json")
    doc = json.loads(out)
    # only documented findings may appear, each marked as such
    assert code == 0 and doc["result"] == "pass"
    assert {v["invariant"] for v in doc["violations"]} <= {"entries_naturally_aligned"}


def test_quiet_and_max_states() -> None:
    code, out, _ = run("check", "--profile", "v4.10", *SMALL, "--max-states", "10", "--quiet")
    assert code == 0
    assert "not exhaustive" in out and "verdict: incomplete" in out


# ------------------------------------------------------------------------ other commands ----


def test_explain_invariant_variant_step_and_action() -> None:
    code, out, _ = run("explain", "no_entry_after_kill")
    assert code == 0 and out.startswith("invariant no_entry_after_kill  (state)")
    assert "source: docs/semantics.md#teardown" in out and "M22" in out
    code, out, _ = run("explain", "M22")
    assert code == 0 and out.startswith("variant M22:") and "devdax check --variant M22" in out
    code, out, _ = run("explain", "clear_alive")
    assert code == 0 and out.startswith("admin step clear_alive") and "kill_dax()" in out
    code, out, _ = run("explain", "fault_lock+fault_check")
    assert code == 0 and "action fault_lock" in out and "action fault_check" in out
    code, out, _ = run("explain", "v4.10")
    assert code == 0 and out.startswith("profile v4.10:")


def test_variants_table_and_json() -> None:
    code, out, _ = run("variants", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == list(VARIANTS)
    assert rows[0].keys() == {"name", "profile", "title", "source", "config", "breaks"}
    code, out, _ = run("variants")
    assert code == 0 and "M22" in out and "rebind-cdev-init" in out


def test_prove_is_delegated(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run("prove", "--list")
    assert code == 0 and "check_vma_exact" in capsys.readouterr().out
    assert run("prove", "--profile", "nope")[0] == 2


def test_scenario_is_delegated_or_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    code, _, _ = run("scenario", "--help") if importlib.util.find_spec("devdax.scenario.cli") else (0, "", "")
    assert code == 0
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    code, _, err = run("scenario", "run")
    assert code == 2 and err == "devdax: error: scenario: devdax.scenario.cli is not available in this tree\n"


def test_all_jobs_and_table() -> None:
    names = [j.name for j in summary.jobs()]
    assert names[: len(PROFILES)] == [f"check {p}" for p in PROFILES]
    assert sum(n.startswith("race ") for n in names) == 7 and "fork v4.10" in names
    assert {n.removeprefix("variant ") for n in names if n.startswith("variant ")} == set(VARIANTS)
    provers = ["v4.10", "modern", "linux-6.1", "linux-6.12", "linux-7.2"]
    assert names[-len(provers) :] == [f"prove {p}" for p in provers]
    rows = summary.run_jobs(
        [j for j in summary.jobs(prove=False) if j.name in ("variant M1", "race v4.10, 2 cpus x 2 faults")]
    )
    assert [r.ok for r in rows] == [True, True]
    out = io.StringIO()
    summary.render_table(rows, 0.1, out)
    assert "all ok! 2/2 jobs met their expectation" in out.getvalue()


def test_finding_job_can_fail() -> None:
    """A finding checked in its own configuration fails the job when that configuration no longer
    reproduces it (one device cannot run out of minors), and passes when it does."""
    job = next(j for j in summary.jobs(prove=False) if j.name == "check v4.7 finding minors_in_range")
    assert job.run(None)[:2] == ("reproduced (9 steps)", True)
    one = Config(profile="v4.7", devices=1, nr_minors=1, files=0, vmas=0, cpus=0, mmaps=())
    text, ok, _ = summary._finding_job("v4.7", "minors_in_range", one).run(None)
    assert (text, ok) == ("not reproduced: minors_in_range", False)


def test_progress_line() -> None:
    buf = io.StringIO()
    p = cli.ProgressLine(buf, force=True)
    p(12345, 678, 9, 2.0)
    p.done()
    assert "12,345 states" in buf.getvalue() and "6,172 states/s" in buf.getvalue()
    assert "frontier" in buf.getvalue() and "depth   9" in buf.getvalue()
    quiet = io.StringIO()
    cli.ProgressLine(quiet)(1, 1, 1, 1.0)
    assert quiet.getvalue() == ""


def test_entry_point_runs_as_a_process() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "devdax.cli", "check", "--cpus", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2 and r.stderr.strip().startswith("devdax: error: --cpus")


def test_all_exit_status_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    few = [j for j in summary.jobs(prove=False) if j.name in ("variant M1", "variant M2")]
    monkeypatch.setattr(summary, "jobs", lambda prove=True: few)
    code, out, _ = run("all", "--json", "--skip-prove")
    doc = json.loads(out)
    assert (
        code == 0
        and doc["result"] == "pass"
        and [j["job"] for j in doc["jobs"]] == ["variant M1", "variant M2"]
    )
    failing = summary.Job("always fails", "pass", lambda progress: ("nope", False, 1))
    monkeypatch.setattr(summary, "jobs", lambda prove=True: [*few, failing])
    code, out, _ = run("all")
    assert code == 1 and "1 FAILED 2/3 jobs met their expectation" in out
