"""Model and impl against every recorded kernel run (tests/kernel-results/), without booting anything.

The recordings are the ground truth: a disagreement with a kernel that is not listed in
disagreements.json fails here, and so does a listed one that no longer occurs (the list is stale: a fix
should remove its entry). A recording of a scenario file that has changed since is stale too, as is a
scenario file that a recorded kernel never ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devdax.conformance import record
from devdax.conformance.cli import SCENARIOS, compare_kernels
from devdax.scenario import format as fmt

RECORDED = record.load()
pytestmark = pytest.mark.skipif(not RECORDED, reason="no kernel recordings in tests/kernel-results")


def _files() -> list[Path]:
    return sorted(SCENARIOS.glob("*.json"))


def test_recordings_are_current() -> None:
    """Every recorded step belongs to a scenario file as it is now, and every file is recorded."""
    sha = {f.name: record.file_hash(f) for f in _files()}
    stale = sorted({(r.linux, r.file) for r in RECORDED if sha.get(r.file) != r.sha})
    assert not stale, f"re-record with devdax conformance --kernel K --record: {stale[:5]}"
    not_set_up = sorted({(r.linux, r.file) for r in RECORDED if record.not_run(r)})
    assert not not_set_up, f"scenarios a kernel could not set up (no ground truth): {not_set_up[:5]}"
    for linux in record.releases():
        done = {r.file for r in RECORDED if r.linux == linux}
        missing = sorted(set(sha) - done)
        assert not missing, f"{linux}: scenario files never run on this kernel: {missing[:5]}"


def test_spec_and_impl_agree_with_kernels_or_the_difference_is_listed() -> None:
    scenarios = [fmt.load(f) for f in _files()]
    found, _ = compare_kernels(RECORDED, scenarios, sorted({r.linux for r in RECORDED}))
    listed = record.known()
    new = [d for d in found if d.key not in listed]
    gone = sorted(set(listed) - {d.key for d in found})
    assert not new, "new disagreements with a kernel:\n" + "\n".join(
        f"  {d.linux} {d.file} step {d.step} {d.op}: kernel {d.kernel}, {d.backend} {d.predicted}"
        for d in new
    )
    assert not gone, f"listed disagreements that no longer occur (remove them): {gone[:5]}"


def test_known_disagreements_say_what_they_are() -> None:
    for key, entry in record.known().items():
        assert entry["status"] in ("open", "deliberate"), key
        if entry["status"] == "deliberate":
            assert str(entry["note"]).strip(), f"{key}: a deliberate difference needs its reason"


def test_findings_reproduce_on_every_recorded_kernel() -> None:
    """F1 oopses in check_vma, F2 leaves the node ENXIO and oopses at removal, F3 shows wrong bytes."""
    for linux in record.releases():
        rec = {(r.file, r.step): r for r in RECORDED if r.linux == linux}
        f1 = rec[("f1_open_after_unbind_null_private.json", 3)]
        assert f1.kernel == "OOPS" and "check_vma" in str(f1.detail), (linux, f1)
        assert rec[("f2_rebind_with_held_file.json", 4)].kernel == "ENXIO", linux
        assert rec[("f2_rebind_with_held_file.json", 6)].kernel == "OOPS", linux
        assert rec[("f3_fixed_unaligned_offset_2m.json", 5)].kernel == "mismatch", linux


def test_diff_shows_each_recorded_kernel_as_a_column(capsys: pytest.CaptureFixture[str]) -> None:
    from devdax.scenario.cli import main

    # F3's wrong bytes: the spec predicts the mismatch every recorded kernel showed (pfn_huge)
    assert (
        main(["diff", "--backends", "spec,kernel", str(SCENARIOS / "f3_fixed_unaligned_offset_2m.json")]) == 0
    )
    out = capsys.readouterr().out
    for linux in record.releases():
        assert f"kernel-{linux}" in out.splitlines()[0]
    assert "1 scenarios, 0 disagreements" in out
