"""Tests for devdax.scenario.format: shipped scenarios load, malformed ones fail loudly and precisely.

Precise errors matter because scenario files are written by hand and run by several backends: a
message that names file, step and field turns a confusing cross-backend disagreement into a one-line
fix.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from devdax.scenario import (
    Backend,
    Mmap,
    Open,
    Scenario,
    ScenarioError,
    Touch,
    check_outcomes,
    exit_status,
    format_size,
    load,
    load_all,
    mismatches,
    parse,
    parse_size,
    step_record,
    summary_line,
    summary_record,
)

SCENARIOS = Path(__file__).parent / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.json"))


def base() -> dict[str, Any]:
    """A small valid scenario that each malformed-input test breaks in exactly one place."""
    return {
        "format": "devdax-scenario/1",
        "name": "base",
        "source": "test",
        "region": {"size": "64M", "align": "2M"},
        "devices": [{"size": "32M"}],
        "steps": [
            {"op": "open", "dev": 0, "flags": ["O_RDWR"], "as": "f"},
            {
                "op": "mmap",
                "fd": "f",
                "length": "4M",
                "prot": ["PROT_READ", "PROT_WRITE"],
                "flags": ["MAP_SHARED"],
                "offset": 0,
                "as": "m",
            },
            {"op": "touch", "map": "m", "offset": "2M", "access": "write", "value": 7},
        ],
        "expect": ["ok", "ok", "ok"],
    }


# ------------------------------------------------------------------------------------ shipped files


def test_enough_scenarios_shipped() -> None:
    assert len(SHIPPED) >= 34


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenario_loads(path: Path) -> None:
    s = load(path)
    assert s.file == path.name
    assert s.source, "every shipped scenario cites where its expectation comes from"
    assert s.profile == "modern"
    # conformance scenarios carry no expect: their ground truth is the kernel recording
    # (tests/kernel-results/), never a prediction written by hand
    if s.expect is not None:
        assert len(s.expect) == len(s.steps)
        check_outcomes(s, list(s.expect))


def test_load_all_is_sorted_and_unique() -> None:
    scenarios = load_all(SCENARIOS)
    assert [s.file for s in scenarios] == [p.name for p in SHIPPED]
    assert len({s.name for s in scenarios}) == len(scenarios)


def test_few_1g_scenarios() -> None:
    """1G-aligned scenarios need a 2G region; keep them rare so backends stay cheap to run (the
    conformance suite needs a few: fault sizes, fixed offsets and toggles differ at 1G)."""
    big = [s.file for s in load_all(SCENARIOS) if s.setup.align == 1 << 30]
    assert 1 <= len(big) <= 8


# ------------------------------------------------------------------------------------ parsing


def test_base_parses_to_typed_steps() -> None:
    s = parse(base(), "base.json")
    assert isinstance(s.steps[0], Open) and s.steps[0].flags == frozenset({"O_RDWR"})
    mm = s.steps[1]
    assert isinstance(mm, Mmap)
    assert mm.length == 4 << 20 and mm.prot == frozenset({"PROT_READ", "PROT_WRITE"})
    assert mm.fixed_offset is None and mm.as_ == "m"
    t = s.steps[2]
    assert isinstance(t, Touch) and t.offset == 2 << 20 and t.value == 7
    assert s.depends_on == ((), (0,), (1,))
    assert s.setup.devices[0].name == "dax0.0" and s.setup.devices[0].size == 32 << 20


def test_defaults_from_format_doc() -> None:
    d = base()
    del d["region"], d["devices"], d["expect"], d["source"]
    s = parse(d, "d.json")
    assert s.setup.region_size == 64 << 20 and s.setup.align == 2 << 20
    assert len(s.setup.devices) == 1 and s.setup.devices[0].size == 64 << 20
    assert s.expect is None and s.profile == "modern"


def test_devices_carved_in_order() -> None:
    d = base()
    d["devices"] = [{"size": "16M"}, {"size": "16M"}]
    s = parse(d)
    assert [(dev.name, dev.start) for dev in s.setup.devices] == [("dax0.0", 0), ("dax0.1", 16 << 20)]


def test_prot_none_is_empty_set() -> None:
    d = base()
    d["steps"][1]["prot"] = ["PROT_NONE"]
    step = parse(d).steps[1]
    assert isinstance(step, Mmap) and step.prot == frozenset()


def test_handle_rebinding_resolves_to_latest() -> None:
    d = base()
    d["steps"] += [
        {"op": "open", "dev": 0, "flags": ["O_RDONLY"], "as": "f"},
        {"op": "close", "fd": "f"},
    ]
    d["expect"] += ["ok", "ok"]
    assert parse(d).depends_on[-1] == (3,)


def _err(d: dict[str, Any], file: str = "bad.json") -> ScenarioError:
    with pytest.raises(ValueError) as info:
        parse(d, file)
    assert isinstance(info.value, ScenarioError)
    return info.value


def test_bad_size_string_names_field() -> None:
    d = base()
    d["steps"][1]["length"] = "4Q"
    e = _err(d)
    assert (e.step, e.field) == (1, "length")
    assert "scenario bad.json step 1 field 'length'" in str(e)


def test_unknown_op() -> None:
    d = base()
    d["steps"][2]["op"] = "poke"
    e = _err(d)
    assert (e.step, e.field) == (2, "op")


def test_undefined_handle() -> None:
    d = base()
    d["steps"][1]["fd"] = "g"
    e = _err(d)
    assert (e.step, e.field) == (1, "fd")
    assert "'g'" in str(e)


def test_handle_used_before_definition() -> None:
    d = base()
    d["steps"].insert(0, {"op": "close", "fd": "f"})
    d["expect"].insert(0, "EBADF")
    e = _err(d)
    assert (e.step, e.field) == (0, "fd")


def test_handle_of_wrong_kind() -> None:
    d = base()
    d["steps"][2]["map"] = "f"
    e = _err(d)
    assert (e.step, e.field) == (2, "map")


def test_expect_length_mismatch() -> None:
    d = base()
    d["expect"] = ["ok", "ok"]
    e = _err(d)
    assert (e.step, e.field) == (None, "expect")
    assert "scenario bad.json field 'expect'" in str(e)


def test_bad_align_value() -> None:
    d = base()
    d["region"]["align"] = "8K"
    e = _err(d)
    assert e.field == "region.align"


@pytest.mark.parametrize(
    ("step", "field", "value"),
    [
        (1, "flags", ["MAP_SHARD"]),
        (1, "prot", ["PROT_READ", "PROT_EXECUTE"]),
        (0, "flags", ["O_RDWR", "O_RDONLY"]),
        (0, "flags", ["O_SYNC"]),
        (0, "dev", 3),
        (2, "access", "poke"),
        (2, "value", 256),
        (2, "offset", True),
        (1, "offset", -4096),
    ],
)
def test_bad_field_values(step: int, field: str, value: object) -> None:
    d = base()
    d["steps"][step][field] = value
    e = _err(d)
    assert (e.step, e.field) == (step, field)


def test_unknown_step_field() -> None:
    d = base()
    d["steps"][1]["lenght"] = "4M"
    e = _err(d)
    assert (e.step, e.field) == (1, "lenght")


def test_missing_required_field() -> None:
    d = base()
    del d["steps"][1]["offset"]
    e = _err(d)
    assert (e.step, e.field) == (1, "offset")


def test_read_touch_with_value_rejected() -> None:
    d = base()
    d["steps"][2]["access"] = "read"
    e = _err(d)
    assert (e.step, e.field) == (2, "value")


@pytest.mark.parametrize(("i", "word"), [(1, "EWHATEVER"), (2, "EINVAL"), (1, "SIGBUS")])
def test_bad_expected_outcomes(i: int, word: str) -> None:
    """Unknown words, and words impossible for the op (touch cannot return an errno)."""
    d = base()
    d["expect"][i] = word
    e = _err(d)
    assert (e.step, e.field) == (i, "expect")


def test_outcome_vocabulary_accepts_every_kind() -> None:
    d = base()
    d["steps"].append({"op": "check", "map": "m", "offset": 0, "value": 1})
    for words in (
        ["ok", "ok", "SIGSEGV", "mismatch"],
        ["ok", "ok", "SIGBUS", "SIGBUS"],
        ["ENXIO", "skipped", "skipped", "skipped"],
        ["ok", "EACCES", "skipped", "skipped"],
    ):
        d["expect"] = words
        assert parse(d).expect == tuple(words)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("profile", "v5.0", "profile"),
        ("format", "devdax-scenario/2", "format"),
        ("devices", [{"size": "3M"}], "devices[0].size"),
        ("devices", [{"size": "48M"}, {"size": "32M"}], "devices[1].size"),
        ("region", {"size": "65M", "align": "2M"}, "region.size"),
        ("expects", [], "expects"),
    ],
)
def test_bad_top_level(key: str, value: object, field: str) -> None:
    d = base()
    d[key] = value
    e = _err(d)
    assert e.step is None and e.field == field


def test_load_names_the_file(tmp_path: Path) -> None:
    d = base()
    d["steps"][1]["length"] = "2.5M"
    p = tmp_path / "x.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"scenario x\.json step 1 field 'length'"):
        load(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match=r"scenario x\.json"):
        load(p)


def test_load_all_rejects_duplicate_names(tmp_path: Path) -> None:
    for n in ("a.json", "b.json"):
        (tmp_path / n).write_text(json.dumps(base()))
    with pytest.raises(ValueError, match="duplicate scenario name"):
        load_all(tmp_path)


# ------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    ("text", "n"), [("4K", 4096), ("2M", 2 << 20), ("1G", 1 << 30), (4096, 4096), ("4096", 4096), (0, 0)]
)
def test_size_round_trip(text: object, n: int) -> None:
    assert parse_size(text) == n
    assert parse_size(format_size(n)) == n
    if isinstance(text, str) and not text.isdigit():
        assert format_size(n) == text


@pytest.mark.parametrize("bad", ["4Q", "-1", "4.5M", "", "4k", " 4K", "K", -1, True, 1.5, None, [4]])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


# ------------------------------------------------------------------------------------ output


def test_step_record_and_summary() -> None:
    s = parse(base(), "base.json")
    assert step_record(s, 1, "mmap", "EINVAL") == {
        "scenario": "base",
        "step": 1,
        "op": "mmap",
        "outcome": "EINVAL",
    }
    with pytest.raises(ValueError):
        step_record(s, 1, "munmap", "ok")
    with pytest.raises(ValueError):
        step_record(s, 1, "mmap", "EWHATEVER")
    good = ["ok", "ok", "ok"]
    bad = ["ok", "EINVAL", "skipped"]
    assert mismatches(s, good) == [] and mismatches(s, bad) == [1, 2]
    assert summary_record(s, bad)["status"] == "fail"
    line = json.loads(summary_line([(s, good), (s, bad)]))["summary"]
    assert line["scenarios"] == 2 and line["passed"] == 1 and line["mismatched_steps"] == 2
    assert exit_status([(s, good)]) == 0 and exit_status([(s, good), (s, bad)]) == 1


def test_unchecked_without_expect() -> None:
    d = base()
    del d["expect"]
    s = parse(d)
    assert summary_record(s, ["ok", "ENXIO", "skipped"])["status"] == "unchecked"
    assert exit_status([(s, ["ok", "ENXIO", "skipped"])]) == 0


def test_backend_protocol_and_outcome_check() -> None:
    class Echo:
        """A stand-in backend that predicts exactly what the file expects."""

        def run(self, scenario: Scenario) -> list[str]:
            return list(scenario.expect or ())

    echo = Echo()
    assert isinstance(echo, Backend)
    s = parse(base())
    check_outcomes(s, echo.run(s))
    with pytest.raises(ValueError):
        check_outcomes(s, ["ok"])
    with pytest.raises(ValueError):
        check_outcomes(s, ["ok", "ok", "EINVAL"])


def test_parse_does_not_mutate_input() -> None:
    d = base()
    before = copy.deepcopy(d)
    parse(d)
    assert d == before


def test_duplicate_json_key_rejected(tmp_path: Path) -> None:
    p = tmp_path / "dup.json"
    text = json.dumps(base()).replace('"length": "4M"', '"length": "4M", "length": "2M"')
    p.write_text(text)
    with pytest.raises(ValueError, match=r"scenario dup\.json field 'length'"):
        load(p)


STEP_REF = re.compile(r"^steps? (\d+)(?:-(\d+))?(?:, (\d+))?")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_notes_refer_to_existing_steps(path: Path) -> None:
    """Notes cite 0-based step indices (as output records do); a stale index misleads a reader."""
    s = load(path)
    for note in s.notes:
        m = STEP_REF.match(note)
        if m:
            for g in m.groups():
                assert g is None or int(g) < len(s.steps), note


def test_readme_indexes_every_scenario() -> None:
    readme = (SCENARIOS / "README.md").read_text(encoding="utf-8")
    for path in SHIPPED:
        assert f"`{path.name}`" in readme, path.name


def test_skipped_must_follow_a_failed_creator() -> None:
    d = base()
    d["expect"] = ["ok", "EINVAL", "ok"]
    e = _err(d)
    assert (e.step, e.field) == (2, "expect")
    d["expect"] = ["ok", "ok", "skipped"]
    e = _err(d)
    assert (e.step, e.field) == (2, "expect")
    d["expect"] = ["ENXIO", "skipped", "skipped"]
    assert parse(d).expect == ("ENXIO", "skipped", "skipped")
