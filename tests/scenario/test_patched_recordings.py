"""The fixes of docs/findings.md on a real kernel: what Linux 6.1 did with the patched device_dax.ko.

tests/kernel-results/patched/<release>+fixes/ is a `devdax conformance --module ... --record` run of
the whole scenario suite with docs/findings/*.patch applied. The expectations below are that
recording's, set beside what the unpatched kernel recorded (tests/kernel-results/<release>/): each
finding is gone, nothing else changed, and the spec under the profile file that states the patches
predicts the patched kernel wherever the linux-6.1 profile predicts the unpatched one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devdax.conformance import record
from devdax.conformance.cli import SCENARIOS, compare_kernels
from devdax.profile_file import load_profile
from devdax.scenario import format as fmt

PATCHED = record.load(record.PATCHED)
FIXES = "6.1+fixes"
PROFILE = Path(__file__).resolve().parents[2] / "docs" / "findings" / "fix-all-6.1.toml"
pytestmark = pytest.mark.skipif(
    not any(r.linux == FIXES for r in PATCHED), reason="no recording of the patched 6.1 kernel"
)


def _steps(linux: str, rows: list[record.Recorded]) -> dict[tuple[str, int], record.Recorded]:
    return {(r.file, r.step): r for r in rows if r.linux == linux}


def _kernel(steps: dict[tuple[str, int], record.Recorded], key: tuple[str, int]) -> str | None:
    return steps[key].kernel if key in steps else None


def test_the_patched_recording_is_current_and_complete() -> None:
    files = {r.file for r in PATCHED if r.linux == FIXES}
    assert files == {f.name for f in SCENARIOS.glob("*.json")}
    stale = sorted({r.file for r in PATCHED if r.sha != record.file_hash(SCENARIOS / r.file)})
    assert not stale, f"re-record with devdax conformance --module ... --record: {stale}"


def test_the_patches_change_only_what_the_findings_touch() -> None:
    """Every step that differs from the unpatched kernel is in a scenario of a finding: F1/F2 and
    k45 (an open after unbind through a held file's i_cdev), F3 and the offset scenarios k12, k14,
    k20, k21 (MAP_FIXED with an unaligned offset), and the teardown oopses of s31c and s33a (F2)."""
    fixed = _steps(FIXES, PATCHED)
    plain = _steps("6.1", record.load())
    changed = {k[0] for k in {*fixed, *plain} if _kernel(fixed, k) != _kernel(plain, k)}
    f3 = {"k12_lengths_offsets_2m.json", "k14_lengths_offsets_1g.json"}
    f3 |= {"k20_fixed_unaligned_offset_2m.json", "k21_fixed_unaligned_offset_1g.json"}
    findings = {f.name for f in SCENARIOS.glob("f[123]_*.json")}
    teardown = {"s31c_touch_after_disable_4k.json", "s33a_reenable_old_mapping.json"}
    assert changed == findings | f3 | teardown | {"k45_open_after_disable_held_file_no_mmap.json"}
    offsets = [k for k in fixed if k[0] in f3 and fixed[k].kernel != plain[k].kernel]
    assert any(fixed[k].kernel == "EINVAL" and fixed[k].op == "mmap" for k in offsets)
    assert not [k for k in offsets if fixed[k].kernel in ("OOPS", "SIGSEGV")]


def test_each_finding_is_gone_on_the_patched_kernel() -> None:
    fixed = _steps(FIXES, PATCHED)
    plain = _steps("6.1", record.load())
    # F1: the open through the cached i_cdev is refused instead of reaching check_vma(NULL)
    assert plain[("f1_open_after_unbind_null_private.json", 3)].kernel == "OOPS"
    assert fixed[("f1_open_after_unbind_null_private.json", 2)].kernel == "ENXIO"
    assert fixed[("f1_open_after_unbind_null_private.json", 3)].kernel == "skipped"
    # F2: after unbind, bind and the held file's close, the node opens, maps and is removed cleanly
    assert plain[("f2_rebind_with_held_file.json", 4)].kernel == "ENXIO"
    assert plain[("f2_rebind_with_held_file.json", 6)].kernel == "OOPS"
    for step in (4, 5, 6):
        assert fixed[("f2_rebind_with_held_file.json", step)].kernel == "ok", step
    # F3: the unaligned offset is refused at mmap; no mapping shows the wrong bytes
    assert plain[("f3_fixed_unaligned_offset_2m.json", 5)].kernel == "mismatch"
    assert fixed[("f3_fixed_unaligned_offset_2m.json", 4)].kernel == "EINVAL"
    # the scenarios whose teardown hit F2's list corruption tear down without an oops
    for name in ("s31c_touch_after_disable_4k.json", "s33a_reenable_old_mapping.json"):
        assert plain[(name, -1)].kernel == "OOPS", name
        assert (name, -1) not in fixed, name
    assert not [r for r in PATCHED if r.kernel == "OOPS"]


def test_the_spec_of_the_fixes_predicts_the_patched_kernel() -> None:
    """The spec under fix-all-6.1.toml predicts every step of the patched kernel, as linux-6.1
    predicts every step of the unpatched one (disagreements.json is empty)."""
    name = load_profile(str(PROFILE)).profile.name
    rows = [r for r in PATCHED if r.linux == FIXES]
    scenarios = [fmt.load(f) for f in sorted(SCENARIOS.glob("*.json"))]
    found, _ = compare_kernels(rows, scenarios, [FIXES], name)
    assert [(d.file, d.step, d.kernel, d.predicted) for d in found] == []
    assert not [k for k in record.known() if k[0] == "6.1"]
