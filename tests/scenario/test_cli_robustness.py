"""Hostile command lines end in one line and exit 2 (issue 14, class 8), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devdax import cli
from devdax.scenario import kernel_devices

S01 = str(Path(__file__).parents[1] / "scenarios" / "s01_private_rdonly_einval.json")


def _scenario(tmp_path: Path, name: str, steps: list[dict[str, object]], tail: str = "") -> str:
    body = json.dumps(
        {"format": "devdax-scenario/1", "name": name, "source": "s", "profile": "modern", "steps": steps}
    )
    path = tmp_path / f"{name}.json"
    path.write_text(body[:-1] + tail + "}" if tail else body)
    return str(path)


def _one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return rc, err[0]


def test_deeply_nested_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _scenario(tmp_path, "deep", [], ', "notes": ' + "[" * 100000 + "]" * 100000)
    rc, line = _one_line(["scenario", "run", f], capsys)
    assert rc == 2 and "deep.json" in line and "nested too deeply" in line


def test_more_files_than_the_spec_holds_names_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    steps: list[dict[str, object]] = [
        {"op": "open", "dev": 0, "flags": ["O_RDWR"], "as": f"f{i}"} for i in range(40)
    ]
    f = _scenario(tmp_path, "many", steps)
    for argv in (["scenario", "run", f], ["scenario", "diff", f]):
        rc, line = _one_line(argv, capsys)
        assert rc == 2 and "many.json step 32" in line and "spec state's bound" in line


def test_nothing_to_run_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for argv in (
        ["scenario", "run", str(tmp_path / "empty")],
        ["scenario", "diff", "--backends", ",", S01],
        ["conformance", "--recorded", str(tmp_path / "empty")],
    ):
        rc, line = _one_line(argv, capsys)
        assert rc == 2, (argv, line)


@pytest.mark.parametrize(
    "argv",
    [["check", "--cpus", str(10**20)], ["check", "--units", str(10**8)], ["prove", "--bmc", str(10**20)]],
)
def test_huge_bounds_are_refused_naming_the_field(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, line = _one_line(argv, capsys)
    assert rc == 2 and argv[1].lstrip("-") in line and "at most" in line


def test_the_kernel_backend_says_why_it_ran_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kernel_devices, "_ndctl", lambda *a: [])
    assert cli.main(["scenario", "run", "--backend", "kernel", S01]) == 3
    assert "not run: no pmem region" in capsys.readouterr().err


def test_an_internal_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "run_variants", broken)
    monkeypatch.delenv("DEVDAX_TRACEBACK", raising=False)
    rc, line = _one_line(["variants"], capsys)
    assert rc == 2 and line.startswith("devdax: internal error: RuntimeError: boom")
