"""Reference counts for any number of files and vmas (proofs/refcount.py): proved for v4.10 and v4.7,
modern proves its core (no use after free included) and fails the exact counts by F2 with a reachable
trace reported as its documented finding, M18 fails with a trace through kfree, and a planted wrong
open is caught by a counterexample to induction."""

from __future__ import annotations

import pytest
import z3

from devdax.proofs import refcount as R
from devdax.proofs import runner
from devdax.proofs.engine import Sys, check_inductive
from devdax.proofs.lifetime import SHARED_RW
from devdax.proofs.obligations import apply_variant, obligations_for
from devdax.proofs.runner import Status
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import get_profile
from devdax.spec.variants import get_variant


def _results(
    profile: str, variant: str | None = None, only: set[str] | None = None
) -> dict[str, runner.Verdict]:
    names = set(R.serves(apply_variant(get_profile(profile), variant))) | {"rc_not_vacuous"}
    obs = [
        o for o in obligations_for(profile, variant) if o.name in names and (only is None or o.name in only)
    ]
    return {r.obligation.name: r.verdict for r in runner.run(obs, timeout=120)}


@pytest.mark.parametrize("profile", ["v4.10", "v4.7"])
def test_proved(profile: str) -> None:
    results = _results(profile)
    assert len(results) >= 12
    bad = {n: v.counterexample for n, v in results.items() if v.status is not Status.PROVED}
    assert not bad


def test_modern_f2_breaks_the_exact_counts_but_not_use_after_free() -> None:
    results = _results("modern")
    for name in ("rc_refcount_exact_cdev", "rc_refcount_exact_device", "rc_no_refcount_underflow"):
        assert results[name].status is Status.FINDING, name
        assert "documented finding" in results[name].counterexample
    trace = results["rc_refcount_exact_cdev"].counterexample
    assert trace.startswith("reachable violation of refcount_exact_cdev")
    assert "unbind:cdev_del" in trace and "bind:cdev_add" in trace and "open(f=" in trace
    assert "re-bind: dev_dax_probe runs cdev_init()" in trace
    under = results["rc_no_refcount_underflow"].counterexample
    assert "underflow=True" in under and "refcount_exact_cdev fails in this profile" in under
    proved = {n for n, v in results.items() if v.status is Status.PROVED}
    assert {
        "rc_no_use_after_free",
        "rc_device_accounted",
        "rc_cdev_accounted",
        "rc_refcount_exact_file",
    } <= proved
    assert proved | {
        "rc_refcount_exact_cdev",
        "rc_refcount_exact_device",
        "rc_no_refcount_underflow",
    } == set(results)


def test_m18_kfree_releases_a_counted_device() -> None:
    v = _results("modern", "M18", {"rc_device_accounted"})["rc_device_accounted"]
    assert v.status is Status.VIOLATED
    assert v.counterexample.startswith("reachable violation of device_accounted")
    assert "create_failed:kfree()" in v.counterexample
    assert "device: released, dev_ref=1" in v.counterexample


def test_model_follows_the_profile() -> None:
    """Programs, ENOMEM placement and lifetime are read from the profile."""
    m410, mod, m47 = (R.model_of(get_profile(p)) for p in ("v4.10", "modern", "v4.7"))
    assert m410.programs[R.CREATE] == ("ida_alloc_id", "device_initialize", "cdev_add", "device_add")
    assert not m410.enomem_after_init and m410.enomem_at == 1
    assert mod.enomem_after_init and mod.programs[R.BIND] == ("cdev_add", "run_dax")
    assert m47.kref and m47.enomem_at is None and m47.programs[R.REMOVE][-1] == "dax_dev_put"


def test_open_without_cdev_get_is_caught() -> None:
    """A planted open that forgets the cdev reference: a counterexample to induction, two states and
    the step (depth 0: no trace search)."""
    md = R.model_of(get_profile("v4.10"))
    sys = R.system(md)

    def forgetful(
        s: dict[str, z3.ExprRef], t: dict[str, z3.ExprRef], tag: str
    ) -> tuple[z3.ExprRef, dict[str, z3.ExprRef]]:
        f = z3.Const(f"f@{tag}", R.F)
        new = {
            **s,
            "opened": z3.Store(s["opened"], f, True),
            "fd": z3.Store(s["fd"], f, True),
            "count": z3.Store(s["count"], f, 1),
            "idx": z3.Store(s["idx"], f, s["nfiles"]),
            "slot": z3.Store(s["slot"], s["nfiles"], f),
            "nfiles": s["nfiles"] + 1,
            "nv": z3.Store(s["nv"], f, 0),
        }
        formula = z3.And(z3.Not(s["opened"][f]), s["cdev_ref"] > 0, *(t[k] == v for k, v in new.items()))
        return formula, {"f": f}

    bad = Sys(
        sys.vars,
        sys.init,
        {**sys.actions, "open": forgetful},
        sys.invariants,
        sys.render,
        sys.frozen,
        sys.tidy,
    )
    v = check_inductive(bad, "cdev_accounted", 60, depth=0, assume=R.core_names(md))
    assert v.status is Status.VIOLATED
    text = v.counterexample
    assert text.startswith("counterexample to induction of cdev_accounted")
    assert "step: open(f=" in text and "state before" in text and "state after (what changed):" in text


# ------------------------------------------------------------------------------------------------
# One source of truth: the refcount step relation against spec/system.successors, through abstract()
# ------------------------------------------------------------------------------------------------


def _cfg(
    profile: str, variant: str | None = None, files: int = 1, vmas: int = 1, add_failure: bool = True
) -> Config:
    return Config(
        profile=profile,
        variant=variant,
        devices=1,
        generations=1,
        files=files,
        vmas=vmas,
        cpus=0,
        mmaps=(SHARED_RW,),
        add_failure=add_failure,
        binds=1 if profile == "modern" else 0,
    )


REFCOUNT_AGREEMENT = {
    "v4.10": _cfg("v4.10", files=2),
    "modern (one bind cycle: F2)": _cfg("modern"),
    "v4.7 (the kref counts vmas)": _cfg("v4.7", files=2, vmas=2),
    "M18 on modern": _cfg("modern", "M18"),
    "M18 on v4.10": _cfg("v4.10", "M18", files=2),
}


@pytest.mark.parametrize("name", list(REFCOUNT_AGREEMENT))
def test_step_relation_agrees_with_spec(name: str) -> None:
    """Every transition of every reachable, not yet crashed spec state is a stutter of the refcount
    model or a run of its steps (the spec's step plus the steps it skipped as inapplicable, which the
    model runs as no-ops), and where it is one model step, every outcome of that step on the same
    file or vma is a spec successor (device_add fails here exactly when the configuration allows it).

    The converse, every model step being a spec step, does not hold and is not asserted, because the
    model is deliberately looser in four places: open() needs only a cdev count above zero (the spec
    also needs kobj_map or a cached i_cdev, and v4.7 a registered live device found by
    class_find_device is modelled exactly), mmap() only an open fd (the spec's check_vma also asks
    alive and a good shape), files and vmas are unbounded (the configuration has a few slots), and
    device_add and a bounded minor ida may fail every time (the configuration says whether they
    may). Each only adds runs, and the invariants (exact counts, no underflow, no use after free) are
    safety properties: true of every run of the model, hence, by the inclusion checked here, of
    every run of the spec."""
    states, visible, bad = R.check_agreement(Ctx.of(REFCOUNT_AGREEMENT[name]))
    assert states > 40 and visible > 60
    assert not bad, "\n".join(map(str, bad[:3]))


def test_agreement_sees_a_wrong_model() -> None:
    """The comparison can fail both ways. A spec step the model lacks: the modern spec against the
    step relation built from M18's programs (kfree where the spec runs put_device). A model step the
    spec lacks: without add_failure in the configuration, the model's device_add may still fail."""
    _, _, bad = R.check_agreement(Ctx.of(_cfg("modern")), model=get_variant("M18").profile())
    assert bad and all(b.kind == "unsound" for b in bad)
    assert any("'create_failed', 0, 'put_device'" in str(b) for b in bad)
    _, _, bad = R.check_agreement(Ctx.of(_cfg("v4.10", add_failure=False)))
    outcome = "create:device_add has an outcome the spec does not have"
    assert bad and all(b.kind == "incomplete" and b.detail.startswith(outcome) for b in bad)
