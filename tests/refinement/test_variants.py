"""Variants reach the implementation, and the refinement checks catch each one (the suite can fail).

For every spec variant whose switches impl walks (the admin programs, check_vma's private test and
the minor's release point), impl is built with ``Variant.profile()`` and checked against the
reference profile it varies:

* lockstep (driver.py): a fixed user program (open O_RDWR and O_RDONLY, mmaps of several shapes, a
  touch, disable, enable) on impl and on the reference spec, following impl's admin programs step
  by step. The first step, outcome or state where they part is the report.
* trace validation (trace.py), for the variants that change the teardown program: one racy run's log
  is not a path of the reference spec.
* against the variant's own spec (same program): the spec's invariants fail on abstraction(impl)
  for the variants whose bug a sequential program reaches (M1, M2, M22, cdev_del-before-kill): the
  refinement holds and the invariant violation is the report.

The admin variants M15, M16, M18 and M19 switch single steps of impl's programs (mappingN pins,
a killable unregister lock, kfree on the creation error path, the unbounded minor ida); each has a
short program of its own (ADMIN_SETUP) that reaches its step. Variants impl does not switch are
listed in NOT_IN_IMPL with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import pytest

from devdax.impl.dax import DaxBus
from devdax.spec.config import Config
from devdax.spec.profiles import Profile
from devdax.spec.variants import VARIANTS

from .checker import TraceRejected, check_trace
from .driver import MINOR_BASE, SHAPES, Driver, RefinementError, spec_config
from .runner import close_bus, race_run
from .test_trace_validation import spec_ctx

TEARDOWN = (
    "no-synchronize",
    "synchronize-before-clear",
    "unmap-before-synchronize",
    "cdev_del-before-kill",
    "M22",
)
#: variants of the admin programs' other steps, each with its own short program (ADMIN_SETUP)
ADMIN = ("M15", "M16", "M18", "M19")
#: variants the common program below reaches
PROGRAM = (*TEARDOWN, "M6", "M1", "M2")
#: variants of the fault handler, switched per device in the handler process (FAULT_SETUP)
FAULT = ("M3", "M4", "M5", "M20")
IN_IMPL = (*PROGRAM, *ADMIN, *FAULT)
#: caught as an invariant violation when impl and spec both run the variant
OWN_SPEC = ("M1", "M2", "M22", "cdev_del-before-kill")
#: admin variants whose own spec's invariants fail on abstraction(impl) (M15's use after free needs
#: a mappingN holder outliving its parent: impl's children have no other holder, see ADMIN_SETUP)
ADMIN_OWN_SPEC = ("M16", "M18", "M19")
NOT_IN_IMPL = {
    "M21": "the modern profile itself (a finding of the reference spec, not a switch); impl "
    "reproduces it (test_impl_reproduces_profile_finding)",
    "rebind-cdev-init": "the modern profile itself (a finding of the reference spec); impl reproduces it",
    "fixed-unaligned-offset": "every profile itself (finding entries_naturally_aligned; the lockstep "
    "menu has the shape, so impl is compared on it)",
}
SHAPE = {m.name: m for m in SHAPES}


def program(d: Driver) -> None:
    """A short program that reaches every switch in PROGRAM."""
    d.open(0, True)
    d.open(0, False)
    d.mmap(0, SHAPE["shared-rw"])
    d.mmap(1, SHAPE["shared-ro"])
    d.mmap(0, SHAPE["private-rw-noreserve"])
    d.touch(0, 0, True)
    d.disable(0)
    d.touch(0, 0, False)
    d.open(0, True)
    d.enable(0)
    d.open(0, True)


def test_every_variant_is_classified() -> None:
    assert set(IN_IMPL) | set(NOT_IN_IMPL) == set(VARIANTS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("profile", ["v4.10", "modern"])
def test_reference_program_passes(profile: str) -> None:
    d = Driver(spec_config(profile))
    try:
        program(d)
    finally:
        d.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", PROGRAM)
def test_lockstep_catches_variant(name: str) -> None:
    v = VARIANTS[name]
    with pytest.raises(RefinementError) as exc:
        d = Driver(spec_config(v.base.name), impl_profile=v.profile())
        try:
            program(d)
        finally:
            d.close()
    msg = str(exc.value)
    print(f"\n[{name}] lockstep report:\n{msg}")
    assert msg.startswith(f"REFINEMENT FAILURE ({v.base.name}+{name} impl vs {v.base.name} spec)")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", OWN_SPEC)
def test_own_spec_invariants_catch_variant(name: str) -> None:
    v = VARIANTS[name]
    with pytest.raises(RefinementError) as exc:
        d = Driver(spec_config(v.base.name), impl_profile=v.profile(), spec_profile=v.profile())
        try:
            program(d)
        finally:
            d.close()
    msg = str(exc.value)
    print(f"\n[{name}] own-spec report:\n{msg}")
    # impl's own contracts (tests run with DEVDAX_CONTRACTS on) may refuse the step first
    assert "impl's own contract" in msg or any(
        f"{kind} {b}" in msg for b in v.breaks for kind in ("invariant", "step property")
    ), msg


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", TEARDOWN)
def test_trace_validation_catches_variant(name: str) -> None:
    v = VARIANTS[name]
    bus = DaxBus(workers=2)
    try:
        run = race_run(bus, v.base.name, seed=1, impl_profile=v.profile())
    finally:
        close_bus(bus)
    with pytest.raises(TraceRejected) as exc:
        check_trace(spec_ctx(v.base.name), run)
    msg = str(exc.value)
    print(f"\n[{name}] trace report:\n{msg}")
    assert "TRACE REJECTED" in msg and "seed 1" in msg


#: teardown orders whose damage only a race shows: a fault checks alive before the kill and inserts
#: after the unmap. Against the variant's own spec (same program, so the step names agree) the
#: trace checker must still reject some run: every path that explains it breaks no_entry_after_kill.
RACY = ("no-synchronize", "synchronize-before-clear")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", RACY)
def test_trace_validation_catches_the_race_of_variant(name: str) -> None:
    from devdax.spec.config import Layout
    from devdax.spec.ctx import Ctx

    v = VARIANTS[name]
    cfg = spec_config(v.base.name, cpus=2, generations=2)
    c = Ctx(cfg, v.profile(), Layout.of(cfg))
    bus = DaxBus(workers=2)
    deadline = time.monotonic() + 80  # caught in a few runs on a quiet machine
    runs, caught = 0, ""
    try:
        while runs < 1500 and time.monotonic() < deadline and not caught:
            run = race_run(
                bus, v.base.name, runs, impl_profile=v.profile(), minor_base=MINOR_BASE + (runs % 4096) * 64
            )
            runs += 1
            try:
                check_trace(c, run)
            except TraceRejected as e:
                caught = str(e)
    finally:
        close_bus(bus)
    print(f"\n[{name}] own-spec race caught after {runs} runs:\n{caught}")
    assert caught, f"{runs} racy runs of {name} were all accepted by its own spec"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("profile", ["v4.10", "modern"])
def test_minor_exhaustion_at_probe(profile: str) -> None:
    """dax_minor_ida runs out while probing the second device (nr_minors=1): v4.10 frees the id and
    drops the half-made device (before device_initialize), modern unwinds through put_device; impl
    follows the spec's error path step by step (a path the random programs never reach)."""
    d = Driver(replace(spec_config(profile, devices=2), nr_minors=1))
    try:
        d.open(0, True)
        d.open(1, True)
        d.disable(0)
        d.enable(0)
    finally:
        d.close()


# ------------------------------------------------------------------------------ admin variants ----


@dataclass(frozen=True)
class AdminSetup:
    """How an admin variant's step is reached: the spec configuration, the injected condition (a
    device_add failure, a fatal signal pending in the admin task) and the program after the probe."""

    cfg: Config
    fail_device_add: bool = False
    signal_pending: bool = False


def _admin_program(d: Driver) -> None:
    """Open and map the device (if it probed), then remove the provider: reaches unregister_lock
    (M16) and the mappingN children's release (M15) with a file and a vma still pinning the device."""
    d.open(0, True)
    d.mmap(0, SHAPE["shared-rw"])
    d.touch(0, 0, True)
    d.remove()


ADMIN_SETUP = {
    # dev_ref of the device kobject: the reference pins it once per mappingN child (6d24b170a9db)
    "M15": AdminSetup(spec_config("modern")),
    # unregister_dev_dax's down_write_killable() fails with a fatal signal pending
    "M16": AdminSetup(spec_config("modern"), signal_pending=True),
    # __devm_create_dev_dax: device_add fails after device_initialize()
    "M18": AdminSetup(replace(spec_config("modern"), add_failure=True), fail_device_add=True),
    # two devices, one reserved minor: the second probe needs a minor beyond nr_dax
    "M19": AdminSetup(replace(spec_config("v4.10", devices=2), nr_minors=1)),
}


def run_admin(name: str, impl_prof: Profile, spec_prof: Profile | None) -> None:
    """The admin variant's setup and program on a bus of its own, impl built with impl_prof."""
    setup = ADMIN_SETUP[name]
    bus = DaxBus(workers=1)
    bus.fail_device_add = setup.fail_device_add
    bus.fatal_signal_pending = setup.signal_pending
    try:
        d = Driver(setup.cfg, impl_profile=impl_prof, spec_profile=spec_prof, bus=bus)
        try:
            _admin_program(d)
        finally:
            d.close()
    finally:
        close_bus(bus)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ADMIN)
def test_admin_setup_passes_on_the_reference(name: str) -> None:
    """The injected conditions alone break nothing: the reference profile handles them as its spec."""
    base = VARIANTS[name].base
    run_admin(name, base, None)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ADMIN)
def test_lockstep_catches_admin_variant(name: str) -> None:
    v = VARIANTS[name]
    with pytest.raises(RefinementError) as exc:
        run_admin(name, v.profile(), None)
    msg = str(exc.value)
    print(f"\n[{name}] lockstep report:\n{msg}")
    assert msg.startswith(f"REFINEMENT FAILURE ({v.base.name}+{name} impl vs {v.base.name} spec)")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ADMIN_OWN_SPEC)
def test_own_spec_invariants_catch_admin_variant(name: str) -> None:
    v = VARIANTS[name]
    with pytest.raises(RefinementError) as exc:
        run_admin(name, v.profile(), v.profile())
    msg = str(exc.value)
    print(f"\n[{name}] own-spec report:\n{msg}")
    # the modern profile documents refcount_exact_all and no_leak_at_quiescence as findings (the
    # re-bind cdev_init), so the driver skips them; impl's own contract (the same refcount rule)
    # then refuses M18's leaked region reference
    assert any(f"invariant {b}" in msg for b in v.breaks) or (
        "impl's own contract" in msg and "refcount_exact_all" in msg
    ), msg


# ------------------------------------------------------------------------------ fault variants ----

#: the spec configuration each fault variant needs; the emulated mm asks cfg.first_fault first, as
#: the spec's mm does (Driver passes it as DaxBus(mm_first_fault=...))
FAULT_SETUP = {
    # 0134ed4fb9e7: a pmd fault on a 4K-aligned device proceeds without fallback or bounds check
    "M3": replace(spec_config("v4.10"), align="4K", first_fault="pmd"),
    # 70b085b06c45: a pud fault on a 2M-aligned device, likewise
    "M4": spec_config("v4.10"),
    # 956a4cd2c957: the install inside rcu_read_lock()
    "M5": spec_config("v4.10"),
    # V410/V411 dax_dev_huge_fault "default:" on a pud fault without PUD support
    "M20": spec_config("v4.10"),
}


def run_fault(name: str, impl_prof: Profile, spec_prof: Profile | None) -> None:
    """Map the device and touch both units. A short grace-period timeout: after M20 the leaked read
    lock makes every synchronize_srcu time out (the spec's teardown_finishes)."""
    cfg = FAULT_SETUP[name]
    bus = DaxBus(workers=1, timeout=2.0, mm_first_fault=cfg.first_fault_bytes)
    try:
        d = Driver(cfg, impl_profile=impl_prof, spec_profile=spec_prof, bus=bus)
        try:
            d.open(0, True)
            d.mmap(0, SHAPE["shared-2"])  # two units (M3's 4K device: the 0x1234 offset fits)
            d.touch(0, 0, True)
            d.touch(0, 1, False)
        finally:
            d.close()
    finally:
        close_bus(bus)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", FAULT)
def test_fault_setup_passes_on_the_reference(name: str) -> None:
    run_fault(name, VARIANTS[name].base, None)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", FAULT)
def test_lockstep_catches_fault_variant(name: str) -> None:
    v = VARIANTS[name]
    with pytest.raises(RefinementError) as exc:
        run_fault(name, v.profile(), None)
    msg = str(exc.value)
    print(f"\n[{name}] lockstep report:\n{msg}")
    assert msg.startswith(f"REFINEMENT FAILURE ({v.base.name}+{name} impl vs {v.base.name} spec)")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", FAULT)
def test_own_spec_catches_fault_variant(name: str) -> None:
    """impl and spec both run the variant: they agree step by step, and the variant's own spec
    property or invariant fails (on the spec's fault step, or on abstraction(impl))."""
    v = VARIANTS[name]
    with pytest.raises(RefinementError) as exc:
        run_fault(name, v.profile(), v.profile())
    msg = str(exc.value)
    print(f"\n[{name}] own-spec report:\n{msg}")
    assert any(f"{kind} {b}" in msg for b in v.breaks for kind in ("invariant", "step property")), msg


# ------------------------------------------------------- findings of the profiles themselves ----


def _m21(d: Driver) -> None:
    """Open through the cached i_cdev after unbind (dax_get_private() == NULL), then mmap."""
    d.open(0, True)
    d.disable(0)
    d.open(0, True)
    d.mmap(1, SHAPE["shared-rw"])


def _rebind(d: Driver) -> None:
    """Re-bind while a file of the earlier binding holds the cdev, then close that file."""
    d.open(0, True)
    d.disable(0)
    d.enable(0)
    d.close_file(0)


def _unaligned_offset(d: Driver) -> None:
    """MAP_FIXED at an aligned address with a 4K file offset, then a huge fault."""
    d.open(0, True)
    d.mmap(0, SHAPE["fixed-unaligned-offset"])
    d.touch(0, 0, False)


#: NOT_IN_IMPL entries that are findings of a profile: impl, run as that profile, reproduces each
#: (lockstep agrees step by step with the spec's path to it) and the finding's invariant fails on
#: abstraction(impl)
FINDINGS = {
    "M21": ("modern", _m21, "no_null_deref"),
    "rebind-cdev-init": ("modern", _rebind, "refcount_exact_all"),
    "fixed-unaligned-offset": ("v4.10", _unaligned_offset, "entries_naturally_aligned"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_impl_reproduces_profile_finding(name: str) -> None:
    from devdax.spec.invariants import INVARIANTS

    from .abstraction import abstraction

    profile, prog, inv = FINDINGS[name]
    assert name in NOT_IN_IMPL and inv in VARIANTS[name].breaks
    d = Driver(spec_config(profile))
    try:
        prog(d)
        check = INVARIANTS[inv].check
        assert check is not None
        err = check(d.c, abstraction(d.c, d.bus, d.ref, minor_base=d.minor_base))
    finally:
        d.close()
    print(f"\n[{name}] {inv} on abstraction(impl): {err}")
    assert err, f"impl did not reproduce {name}: {inv} holds on abstraction(impl)"


@pytest.mark.timeout(60)
def test_own_spec_catches_m22_minor_reuse_without_faults() -> None:
    """M22 without a fault: the remove program frees the minor at unregister (ida_free_minor, the
    v4.7 order) while a file of the old instance is open; the re-probe's device takes the same
    minor, and minor_unique fails on abstraction(impl), impl having run ida_free_minor where the
    variant's spec does."""
    v = VARIANTS["M22"]
    with pytest.raises(RefinementError) as exc:
        d = Driver(spec_config("v4.10"), impl_profile=v.profile(), spec_profile=v.profile())
        try:
            d.open(0, True)
            d.disable(0)
            d.enable(0)
        finally:
            d.close()
    msg = str(exc.value)
    print(f"\n[M22] own-spec report without faults:\n{msg}")
    assert "invariant minor_unique" in msg and "step ida_free_minor of dax0.0: ok / ok" in msg, msg
