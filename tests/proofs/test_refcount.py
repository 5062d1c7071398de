"""v4.7's kref counts for any number of files and vmas (proofs/refcount.py): proved, the step
relation agrees with the spec's, and a planted wrong open is caught by a counterexample to induction.
The cdev-kobject profiles' counts (F2 on modern, M18) are proofs/lifetime.py's (test_lifetime.py)."""

from __future__ import annotations

import pytest
import z3

from devdax.proofs import refcount as R
from devdax.proofs import runner
from devdax.proofs.engine import Sys, check_inductive
from devdax.proofs.lifetime import SHARED_RW
from devdax.proofs.obligations import obligations_for
from devdax.proofs.runner import Status
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import get_profile


def _results(profile: str) -> dict[str, runner.Verdict]:
    obs = [o for o in obligations_for(profile) if o.name.startswith("rc_")]
    return {r.obligation.name: r.verdict for r in runner.run(obs, timeout=120)}


def test_v47_proves_every_kref_count() -> None:
    results = _results("v4.7")
    assert len(results) == 12
    bad = {n: v.counterexample for n, v in results.items() if v.status is not Status.PROVED}
    assert not bad


def test_cdev_profiles_are_lifetimes() -> None:
    """The cdev-kobject profiles count through the cdev: proofs/lifetime.py owns those claims
    (life_cdev_count_exact, life_device_count_exact, life_file_count_exact ...), so each is proved once."""
    for p in ("v4.10", "modern"):
        assert R.refcount_obligations(get_profile(p)) == [] and R.serves(get_profile(p)) == {}
        with pytest.raises(ValueError, match=r"proofs/lifetime\.py"):
            R.model_of(get_profile(p))


def test_model_follows_the_profile() -> None:
    """The programs are read from the profile, keeping the steps that touch a count."""
    md = R.model_of(get_profile("v4.7"))
    assert md.programs[R.CREATE] == ("ida_alloc_id", "kref_init", "device_create")
    assert md.programs[R.REMOVE] == ("device_unregister", "dax_dev_put")


def test_open_without_dax_dev_get_is_caught() -> None:
    """A planted open that forgets the dax_dev kref: a counterexample to induction, two states and
    the step (depth 0: no trace search)."""
    sys = R.system(R.model_of(get_profile("v4.7")))

    def forgetful(
        s: dict[str, z3.ExprRef], t: dict[str, z3.ExprRef], tag: str
    ) -> tuple[z3.ExprRef, dict[str, z3.ExprRef]]:
        return R.open_({**s, "kref": s["kref"] - 1}, t, tag)  # its dax_dev_get is undone

    bad = Sys(
        sys.vars,
        sys.init,
        {**sys.actions, "open": forgetful},
        sys.invariants,
        sys.render,
        sys.frozen,
        sys.tidy,
    )
    v = check_inductive(bad, "refcount_exact_kref", 60, depth=0)
    assert v.status is Status.VIOLATED
    text = v.counterexample
    assert text.startswith("counterexample to induction of refcount_exact_kref")
    assert "step: open(f=" in text and "state before" in text and "state after (what changed):" in text


# ------------------------------------------------------------------------------------------------
# One source of truth: the refcount step relation against spec/system.successors, through abstract()
# ------------------------------------------------------------------------------------------------


def _cfg(profile: str, files: int = 1, vmas: int = 1) -> Config:
    return Config(
        profile=profile, devices=1, generations=1, files=files, vmas=vmas, cpus=0, mmaps=(SHARED_RW,), binds=0
    )


def test_step_relation_agrees_with_spec() -> None:
    """Every transition of every reachable, not yet crashed v4.7 spec state (two files, two vmas:
    the kref counts vmas) is a stutter of the refcount model or a run of its steps (the spec's step
    plus the steps it skipped as inapplicable, which the model runs as no-ops), and where it is one
    model step, every outcome of that step on the same file or vma is a spec successor.

    The converse, every model step being a spec step, does not hold and is not asserted, because the
    model is deliberately looser: mmap() needs only an open fd (the spec's check_vma also asks alive
    and a good shape), and files and vmas are unbounded (the configuration has a few slots). Each
    only adds runs, and the invariants (exact counts, no underflow, no use after free) are safety
    properties: true of every run of the model, hence, by the inclusion checked here, of every run
    of the spec."""
    states, visible, bad = R.check_agreement(Ctx.of(_cfg("v4.7", files=2, vmas=2)))
    assert states > 40 and visible > 60
    assert not bad, "\n".join(map(str, bad[:3]))


def test_agreement_sees_a_wrong_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: a removal whose last step forgets to drop kref_init's reference is
    a spec step the model lacks."""
    monkeypatch.setitem(R.EFFECTS, "dax_dev_put", lambda s: {**s, "init_ref": z3.BoolVal(False)})
    _, _, bad = R.check_agreement(Ctx.of(_cfg("v4.7")))
    assert bad and all(b.kind == "unsound" for b in bad)
    assert any("dax_dev_put" in str(b) for b in bad)
