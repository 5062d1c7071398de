"""The worked example of docs/profile-files.md end to end, as a driver author meets it: the wrong
change (docs/examples/unbind-no-grace.toml) is caught by check and prove, its picture in the docs is
what `check --svg` draws and shows the late insert, and the fix passes check and the whole of prove.

Why a file of its own: the example is the docs' promise to a newcomer; test_profile_file.py covers
the format, this covers the story the docs tell, including the full prove (about 25 s).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from devdax import api
from devdax.picture import example_pictures

ROOT = Path(__file__).resolve().parents[2]
BAD = "docs/examples/unbind-no-grace.toml"
FIXED = "docs/examples/unbind-no-grace-fixed.toml"
PICTURE = "pictures/example-unbind-no-grace.svg"


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_wrong_change_is_caught_with_the_late_insert_last() -> None:
    report = api.check(BAD)
    assert not report.passed and report.exit_code == 1
    assert {"no_entry_after_kill", "no_map_of_dead_device"} <= set(report.violated)
    trace = report.counterexample("no_entry_after_kill")
    steps = re.findall(r"^\s+(\d+)\. (.+)$", trace, re.M)
    assert "unbind(dax0): clear_alive" in steps[-3][1] and "unmap_mapping_range" in steps[-2][1]
    assert "fault_insert" in steps[-1][1], "the entry lands after the unmap: that is the bug"


def test_its_picture_is_in_the_docs_and_current() -> None:
    text = (ROOT / "docs" / "profile-files.md").read_text()
    assert f"]({PICTURE})" in text, "docs/profile-files.md embeds the counterexample's picture"
    drawn = example_pictures()["example-unbind-no-grace.svg"]
    assert (ROOT / "docs" / PICTURE).read_text() == drawn, "stale: .venv/bin/python -m devdax.picture"
    root = ET.fromstring(drawn)
    words = " ".join(t for t in root.itertext())
    assert f"profile {BAD}: no_entry_after_kill" in words and "fault_insert" in words


def test_wrong_change_fails_prove_against_its_base() -> None:
    report = api.prove(BAD, only=["proto_dead_quiesced"])
    assert report.exit_code == 1 and report.statuses["proto_dead_quiesced"] == "violated"


def test_fix_passes_check_and_the_whole_prove() -> None:
    checked = api.check(FIXED)
    assert checked.passed, checked.text
    assert "against base modern: 0 new violations, 0 findings fixed" in checked.text
    proved = api.prove(FIXED)
    assert proved.exit_code == 0, proved.text
    assert "against base modern: 0 new violations, 0 findings fixed" in proved.text
    assert "violated" not in proved.statuses.values()
