"""proofs/lifetime.py: one device's admin lifetime, for any number of files, vmas and bind cycles.

v4.10 proves every lifetime invariant; modern proves them but for exactly its documented findings
(F1/M21: no_null_deref; F2, the re-bind cdev_init: the exact cdev count, underflow, leak), and each
variant the protocol proofs do not see fails here with a counterexample to induction on the
invariant it breaks.
"""

from __future__ import annotations

import os
import time

import pytest
import z3

from devdax.proofs import engine, runner
from devdax.proofs.lifetime import SHARED_RW, abstract, check_agreement, lifetime_obligations, lifetime_system
from devdax.proofs.obligations import obligations_for
from devdax.proofs.runner import Status
from devdax.spec.admin import run_program
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import get_profile
from devdax.spec.system import init
from devdax.spec.variants import get_variant

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
    assert failed == {
        "life_no_null_deref",
        "life_no_refcount_underflow",
        "life_no_list_corruption",
        "life_no_leak_at_quiescence",
        "life_cdev_count_exact",
    }
    for n in failed:
        assert verdicts[n].status is Status.FINDING
        assert "documented finding" in verdicts[n].counterexample
    assert "mmap (NULL private_data)" in verdicts["life_no_null_deref"].counterexample
    assert "bind:cdev_add" in verdicts["life_cdev_count_exact"].counterexample
    assert "device_del" in verdicts["life_no_list_corruption"].counterexample


@pytest.mark.parametrize(
    ("profile", "variant", "obligation", "step"),
    [
        ("v4.10", "M6", "life_alive_implies_registered", "provider_put"),
        ("v4.10", "cdev_del-before-kill", "life_alive_implies_registered", "remove:cdev_del"),
        ("modern", "M16", "life_removed_region_dead", "dax_region_unregister"),
        ("modern", "M15", "life_no_use_after_free", "mapping_release"),
    ],
)
def test_variant_fails_with_a_cti(profile: str, variant: str, obligation: str, step: str) -> None:
    v = _life(profile, variant, (obligation,))[obligation]
    assert v.status is Status.VIOLATED
    lines = v.counterexample.splitlines()
    assert lines[0].startswith("counterexample to induction of ")
    assert "state before (the assumed invariants hold):" in lines
    assert any(ln.startswith("step: ") and step in ln for ln in lines)
    assert "documented finding" not in v.counterexample


def test_m5_sleeps_in_rcu() -> None:
    """M5 turns SRCU back into rcu_read_lock: inserting an entry (may allocate a page table) inside
    the read section fails the step property; v4.10 and modern prove it."""
    for profile, variant, want in (
        ("v4.10", "M5", Status.VIOLATED),
        ("v4.10", None, Status.PROVED),
        ("modern", None, Status.PROVED),
    ):
        obs = runner.select(obligations_for(profile, variant), ["proto_no_sleep_in_rcu"])
        v = runner.run(obs, timeout=TIMEOUT)[0].verdict
        assert v.status is want, (profile, variant, v.counterexample)
        if want is Status.VIOLATED:
            assert "step: fault_insert(cpu=" in v.counterexample and "nest=1" in v.counterexample


def test_v47_is_out_of_scope() -> None:
    """v4.7's dax_dev kref and class_find_device lookup are proofs/refcount.py's: no lifetime
    obligation, so each claim has one owner."""
    assert lifetime_obligations(get_profile("v4.7")) == []


# ------------------------------------------------------------------------------------------------
# One source of truth: the model's step relation is spec/system.successors, read through abstract()
# ------------------------------------------------------------------------------------------------


def _small(profile: str, variant: str | None = None, files: int = 1) -> Config:
    return Config(
        profile=profile,
        variant=variant,
        devices=1,
        generations=1,
        cpus=0,
        files=files,
        vmas=1,
        ranges=2,
        units=2,
        binds=1 if profile == "modern" else 0,
        add_failure=True,
        mmaps=(SHARED_RW,),
    )


AGREEMENT = {
    "v4.10": _small("v4.10", files=2),
    "modern (also M21: the profile itself)": _small("modern"),
    "M6": _small("v4.10", "M6", files=2),
    "cdev_del-before-kill": _small("v4.10", "cdev_del-before-kill", files=2),
    "M15": _small("modern", "M15"),
    "M16": _small("modern", "M16"),
}
#: 30-60 s each on the shared box: DEVDAX_SLOW=1 pytest tests/proofs/test_lifetime.py
if os.environ.get("DEVDAX_SLOW"):
    AGREEMENT |= {
        "modern, two files": _small("modern", files=2),
        "M16, two files": _small("modern", "M16", 2),
    }


@pytest.mark.parametrize("name", list(AGREEMENT))
def test_step_relation_agrees_with_spec(name: str) -> None:
    states, bad = check_agreement(Ctx.of(AGREEMENT[name]))
    assert states > 50
    assert not bad, "\n".join(f"{b.kind}: {b.detail}\n  from {b.state}" for b in bad[:3])


def test_agreement_sees_a_wrong_program() -> None:
    """The comparison can fail: the v4.10 spec against the step relation built from M6's programs."""
    _, bad = check_agreement(Ctx.of(_small("v4.10")), model=get_variant("M6").profile())
    kinds = {b.kind for b in bad}
    assert kinds == {"unsound", "incomplete"}
    assert any("device_add" in b.detail or "cdev_add" in b.detail for b in bad)


def test_abstraction_of_a_probed_device() -> None:
    """After probe (spec's own run_program) the abstraction reads what a person expects."""
    c = Ctx.of(_small("v4.10"))
    s = run_program(c, init(c), "probe", 0)
    o = abstract(c, s, True)
    assert (o["prog"], o["alive"], o["registered"], o["cdev_mapped"], o["dev_ref"], o["cdev_ref"]) == (
        0,
        True,
        True,
        True,
        2,
        1,
    )
    assert o["rg_kref"] == 2 and not o["provider_ref"] and o["devm_ref"] and o["holds_region"]


def test_f1_is_reachable_as_docs_findings_says() -> None:
    """docs/findings.md F1: probe up to cdev_add, open, mmap -> oops. The bounded search finds exactly
    that run as the shortest one, from Init: the counterexample to induction is reachable."""
    sys = lifetime_system(get_profile("modern"))
    inv = sys.invariant("no_null_deref")
    status, run, _ = engine.shortest_run(sys, lambda s: z3.Not(inv.fn(s)), 12, time.monotonic() + TIMEOUT)
    assert status is Status.VIOLATED and run is not None
    trace = run.names
    assert [t.split(":")[1] for t in trace[:9]] == [
        "alloc_dax_region",
        "ida_alloc_id",
        "region_get",
        "device_initialize",
        "ida_alloc_minor",
        "dax_inode_get",
        "device_add",
        "add_mappings",
        "cdev_add",
    ]
    assert trace[9:] == ["open", "mmap (NULL private_data)"]
