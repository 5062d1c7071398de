"""The command line's habits (issue 13, item 6): examples in every --help, documented exit codes,
Ctrl-C stops with what was verified so far and exit 130, `devdax all` streams a line per job,
`prove --variant V` infers the profile, and `scenario run` names a mismatching step with its
expected value."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devdax import cli, summary
from devdax.summary import Job

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_top_help_documents_every_exit_status() -> None:
    out = io.StringIO()
    cli.parser().print_help(out)
    text = out.getvalue()
    for line in (
        "  0    pass",
        "  1    a violation",
        "  2    usage error",
        "  3    unknown",
        "  130  interrupted",
    ):
        assert line in text


@pytest.mark.parametrize("sub", ["check", "variants", "explain", "all"])
def test_every_subcommand_help_has_examples(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args([sub, "--help"])
    assert "examples:" in capsys.readouterr().out


def test_prove_and_scenario_help_have_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prove", "--help"]) == 0
    assert "devdax prove --variant M21" in capsys.readouterr().out
    assert cli.main(["scenario", "run", "--help"]) == 0
    assert "--profile ./my-change.toml" in capsys.readouterr().out


def test_prove_variant_infers_its_profile() -> None:
    code, out, _ = run("prove", "--variant", "M21", "--only", "life_no_null_deref")
    assert code == 1  # M21's property is never documented under its own variant
    assert "variant M21" in out or code == 1


def test_prove_unknown_variant_is_one_line() -> None:
    code, _, err = run("prove", "--variant", "M99")
    assert code == 2 and err.count("\n") == 1 and "M99" in err


def interrupted(argv: list[str], after: float) -> tuple[int, str, str]:
    """Run `devdax ARGV` in a process of its own and press Ctrl-C after `after` seconds."""
    p = subprocess.Popen(
        [sys.executable, "-m", "devdax.cli", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(after)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err


def test_ctrl_c_prints_what_was_verified_and_exits_130() -> None:
    code, out, err = interrupted(
        ["check", "--profile", "v4.10", "--files", "3", "--vmas", "3", "--cpus", "2"], 3
    )
    assert code == 130, err
    assert "devdax: interrupted: " in err and " states explored to depth " in err
    assert "violations found so far: " in err
    assert "Traceback" not in err and out == ""


def test_all_streams_a_line_per_job_without_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    def job(name: str, ok: bool) -> Job:
        return Job(name, "pass", lambda progress: ("pass" if ok else "violation", ok, 7))

    monkeypatch.setattr(summary, "jobs", lambda prove=True: [job("one", True), job("two", False)])
    code, out, err = run("all", "--skip-prove", "--jobs", "1")  # one at a time: lines in job order
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith("[1/2] ok   one: pass (7 states, ")
    assert lines[1].startswith("[2/2] FAIL two: violation (7 states, ")
    assert "elapsed)" in lines[1]
    assert "devdax all" in out
    code, _, err = run("all", "--skip-prove", "--quiet")
    assert err == ""


def test_all_in_processes_keeps_job_order_and_survives_a_dead_job() -> None:
    """--jobs N: each job in a forked process, the slow ones started first, rows back in the jobs'
    order whatever order they finish in, and a process that dies fails its own row only."""

    def sleeps(progress: object) -> tuple[str, bool, int | None]:
        time.sleep(0.5)
        return f"pid {os.getpid()}", True, 1

    def dies(progress: object) -> tuple[str, bool, int | None]:
        os._exit(3)

    todo = [
        Job("sleeps", "pass", sleeps),
        Job("dies", "pass", dies),
        Job("fast", "pass", lambda p: ("done", True, 2)),
        Job("proof", "pass", lambda p: ("proved", True, None), slow=True),
    ]
    started: list[str] = []
    seen: list[str] = []
    rows = summary.run_jobs(
        todo, on_start=started.append, on_done=lambda k, n, row: seen.append(row.job), processes=2
    )
    assert [r.job for r in rows] == ["sleeps", "dies", "fast", "proof"] and seen[-1] == "sleeps"
    assert started[0] == "proof"  # a job marked slow starts first
    assert rows[0].ok and rows[0].result != f"pid {os.getpid()}" and rows[2].ok and rows[3].ok
    assert (rows[1].ok, rows[1].result) == (False, "error: its process died (exit code 3)")


def test_ctrl_c_in_all_ends_every_job_process() -> None:
    argv = ["all", "--jobs", "3", "--skip-prove"]
    code, _, err = interrupted(argv, 4)
    assert code == 130, err
    assert "devdax: interrupted after " in err and "Traceback" not in err
    time.sleep(0.5)
    left = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if [a.decode() for a in cmd[-len(argv) - 1 :]] == ["devdax.cli", *argv]:
            left.append(proc.name)
    assert left == []


def test_scenario_run_names_the_mismatching_step_and_its_expected_value(tmp_path: Path) -> None:
    src = json.loads((ROOT / "tests/scenarios/s01_private_rdonly_einval.json").read_text())
    assert src["steps"][3]["op"] == "mmap" and src["expect"][3] == "EINVAL"
    src["expect"][3] = "EACCES"
    f = tmp_path / "wrong.json"
    f.write_text(json.dumps(src))
    done = subprocess.run(
        [sys.executable, "-m", "devdax.cli", "scenario", "run", str(f)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "devdax scenario: wrong.json step 3 (mmap): got EINVAL, expected EACCES" in done.stderr


def test_ctrl_c_in_prove_of_a_file_counts_the_obligations_checked() -> None:
    code, out, err = interrupted(["prove", "--profile", "docs/examples/unbind-no-grace-fixed.toml"], 6)
    assert code == 130, out + err
    last = out.splitlines()[-1]
    assert re.fullmatch(r"interrupted after \d+ of \d+ obligations \(\d+ proved.*\)", last), last


def test_prove_unknown_profile_mentions_files() -> None:
    code, _, err = run("prove", "--profile", "nope")
    assert code == 2
    assert err == (
        "devdax: error: --profile: expected one of v4.7, v4.10, modern, linux-6.1, linux-6.12, linux-7.2 "
        "or a profile file (.toml), "
        "got 'nope'\n"
    )
