"""Issue 3, item 5: each bug variant of spec/variants.py fails its proof in the profile where the bug can
happen: among the obligations of its profile and variant (proofs.obligations.obligations_for), the
ones named here include at least one VIOLATED with a readable counterexample.

A variant must fail for its own reason, not for a documented finding its base profile already has
(every v4.10 variant also shows F3 under fault_phys_aligned): that one stays a FINDING and does not
count. The properties a variant breaks are never documented under it (proofs.obligations
.documented_findings), so a variant that *is* its profile (no switch: M21, F2, F3) is VIOLATED too.

Only the named obligations run (``runner.select``), each with a short solver budget, so the whole
test stays affordable; a variant added to spec/variants.py without an entry here fails the test.
"""

from __future__ import annotations

import pytest

from devdax.proofs import runner
from devdax.proofs.obligations import obligations_for
from devdax.proofs.runner import Status
from devdax.spec.variants import VARIANTS

#: seconds per obligation; a CTI of these is found in well under a second on an idle machine
TIMEOUT = 60.0

#: the obligations that state what each variant breaks (from `devdax prove --variant V`)
CATCHES: dict[str, tuple[str, ...]] = {
    "M1": ("check_vma_exact", "proto_vmas_shared"),
    "M2": ("mmap_aligned_accepted", "check_vma_exact"),
    "M3": ("negotiate_table", "fault_entry_in_vma", "proto_checked_exact"),
    "M4": ("negotiate_table", "fault_entry_in_vma", "proto_checked_exact"),
    "M5": ("proto_no_sleep_in_rcu",),
    "M6": ("life_alive_implies_registered",),
    "M15": ("life_no_use_after_free",),
    "M16": ("life_removed_region_dead",),
    "M18": ("life_released_at_zero",),
    "M19": ("minors_in_range",),
    "M20": ("proto_lock_balanced",),
    "M22": ("proto_no_entry_after_kill", "minor_unique"),
    "unmap-before-synchronize": ("proto_no_entry_after_kill",),
    "no-synchronize": ("proto_no_entry_after_kill", "proto_dead_quiesced"),
    "synchronize-before-clear": ("proto_no_entry_after_kill", "proto_dead_quiesced"),
    "cdev_del-before-kill": ("life_alive_implies_registered",),
    "M21": ("life_no_null_deref",),
    "fixed-unaligned-offset": ("fault_phys_aligned",),
    "rebind-cdev-init": ("life_cdev_count_exact", "life_no_refcount_underflow"),
}

#: variants whose proof is still being delivered elsewhere: strict, so this turns red once they pass
PENDING: dict[str, str] = {}


def _params() -> list[object]:
    out: list[object] = []
    for name in VARIANTS:
        marks = [pytest.mark.xfail(strict=True, reason=PENDING[name])] if name in PENDING else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def test_every_variant_has_an_entry() -> None:
    assert set(CATCHES) == set(VARIANTS)


@pytest.mark.parametrize("name", _params())
def test_variant_fails_its_proof(name: str) -> None:
    v = VARIANTS[name]
    assert name in CATCHES, f"{name}: say which obligations catch it"
    obs = runner.select(obligations_for(v.base.name, name), CATCHES[name])
    results = runner.run(obs, timeout=TIMEOUT)
    caught = [r for r in results if r.verdict.status is Status.VIOLATED and r.verdict.counterexample.strip()]
    assert caught, "\n".join(
        f"{r.obligation.name}: {r.verdict.status.value} {r.verdict.counterexample}" for r in results
    )
    text = caught[0].verdict.counterexample
    assert len(text.splitlines()) >= 2, text  # a state and a step at least, not a bare verdict
