"""proofs/lifetime.py: one device's admin lifetime, for any number of files, vmas and bind cycles.

v4.10 proves every lifetime invariant; modern proves them but for exactly its documented findings
(F1/M21: no_null_deref; F2, the re-bind cdev_init: the exact cdev count, underflow, leak), and each
variant the protocol proofs do not see fails here with a counterexample to induction on the
invariant it breaks.
"""

from __future__ import annotations

import pytest

from devdax.proofs import runner
from devdax.proofs.lifetime import lifetime_obligations
from devdax.proofs.obligations import obligations_for
from devdax.proofs.runner import Status
from devdax.spec.profiles import get_profile

#: generous: an UNKNOWN still fails these tests, and the CI machine is shared
TIMEOUT = 120


def _life(profile: str, variant: str | None = None, only: tuple[str, ...] = ()) -> dict[str, runner.Verdict]:
    obs = [o for o in obligations_for(profile, variant) if o.name.startswith("life_")]
    return {r.obligation.name: r.verdict for r in runner.run(runner.select(obs, only), timeout=TIMEOUT)}


def test_v410_proves_every_lifetime_invariant() -> None:
    verdicts = _life("v4.10")
    assert len(verdicts) > 10
    assert {n: v.counterexample for n, v in verdicts.items() if v.status is not Status.PROVED} == {}


def test_modern_fails_exactly_its_documented_findings() -> None:
    verdicts = _life("modern")
    failed = {n for n, v in verdicts.items() if v.status is not Status.PROVED}
    assert failed == {"life_no_null_deref", "life_no_refcount_underflow", "life_no_leak_at_quiescence",
                      "life_cdev_count_exact"}
    for n in failed:
        assert verdicts[n].status is Status.VIOLATED
        assert "documented finding" in verdicts[n].counterexample
    assert "mmap (NULL private_data)" in verdicts["life_no_null_deref"].counterexample
    assert "bind:cdev_add" in verdicts["life_cdev_count_exact"].counterexample


@pytest.mark.parametrize(("profile", "variant", "obligation", "step"), [
    ("v4.10", "M6", "life_alive_implies_registered", "provider_put"),
    ("v4.10", "cdev_del-before-kill", "life_alive_implies_registered", "remove:cdev_del"),
    ("modern", "M16", "life_removed_region_dead", "dax_region_unregister"),
    ("modern", "M15", "life_no_use_after_free", "mapping_release"),
])
def test_variant_fails_with_a_cti(profile: str, variant: str, obligation: str, step: str) -> None:
    v = _life(profile, variant, (obligation,))[obligation]
    assert v.status is Status.VIOLATED
    lines = v.counterexample.splitlines()
    assert lines[0] == "counterexample to induction"
    assert "state before (the assumed invariants hold):" in lines
    assert any(ln.startswith("step: ") and step in ln for ln in lines)
    assert "documented finding" not in v.counterexample


def test_m5_sleeps_in_rcu() -> None:
    """M5 turns SRCU back into rcu_read_lock: inserting an entry (may allocate a page table) inside
    the read section fails the step property; v4.10 and modern prove it."""
    for profile, variant, want in (("v4.10", "M5", Status.VIOLATED), ("v4.10", None, Status.PROVED),
                                   ("modern", None, Status.PROVED)):
        obs = runner.select(obligations_for(profile, variant), ["ind_no_sleep_in_rcu"])
        v = runner.run(obs, timeout=TIMEOUT)[0].verdict
        assert v.status is want, (profile, variant, v.counterexample)
        if want is Status.VIOLATED:
            assert "step: fault_insert(cpu=" in v.counterexample and "nest=1" in v.counterexample


def test_v47_is_out_of_scope() -> None:
    """v4.7's dax_dev kref and class_find_device lookup are not modelled: no lifetime obligation."""
    assert lifetime_obligations(get_profile("v4.7")) == []
