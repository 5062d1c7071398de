"""Each profile gives its documented verdict, and each variant is caught with a shortest trace.

Issue 2, "Done when": v4.10 passes; v4.7 and modern report exactly their documented findings and
nothing else; every listed variant is caught with a minimal counterexample. Minimality is checked
independently of the checker: a separate breadth-first search over the same successor relation
(reduced, canonical) finds the depth of the first state (or step) that breaks the property, and the
checker's trace must have exactly that length. Every trace is also replayed step by step through the
spec, so a trace is a real run and not an artefact of the checker's bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from devdax.model.checker import CheckResult, Step, check
from devdax.model.reduction import reduced_successors
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS
from devdax.spec.profiles import PROFILES
from devdax.spec.state import State
from devdax.spec.symmetry import canonical
from devdax.spec.system import init
from devdax.spec.variants import PROFILE_CONFIGS, VARIANTS, finding_configs, variant_config

#: the exhaustive default checks that take more than a couple of seconds
SLOW_PROFILES = {"v4.10"}

#: tests/model/conftest.py's ``explored`` fixture: check(cfg) and its states, once per session
Explored = Callable[[Config], tuple[CheckResult, list[State]]]


def shortest_depths(c: Ctx, names: set[str]) -> dict[str, int]:
    """Length of a shortest run that breaks each of `names`: depth of the first bad state, or one
    more than the depth of the first state with a bad outgoing step. Layer by layer, so shortest by
    construction; one pass for all names."""
    invs = [INVARIANTS[n] for n in names]
    found: dict[str, int] = {}

    def look(s: State, depth: int) -> None:
        for inv in invs:
            if inv.name not in found and inv.check is not None and inv.check(c, s) is not None:
                found[inv.name] = depth

    s0 = canonical(init(c))
    look(s0, 0)
    seen = {s0}
    layer = [s0]
    depth = 0
    while layer and len(found) < len(invs):
        nxt: list[State] = []
        for s in layer:
            for t in reduced_successors(c, s):
                for inv in invs:
                    if inv.name not in found and inv.step is not None and inv.step(c, s, t) is not None:
                        found[inv.name] = depth + 1
                ns = canonical(t.state)
                if ns in seen:
                    continue
                seen.add(ns)
                look(ns, depth + 1)
                nxt.append(ns)
        layer = nxt
        depth += 1
    return found


def shortest_depth(c: Ctx, name: str) -> int | None:
    return shortest_depths(c, {name}).get(name)


def replay(c: Ctx, trace: list[Step]) -> State:
    """Run the trace through the spec: each step must be one of the enabled transitions of the state
    before it, with the same arguments, outcome and (canonical) resulting state."""
    s = canonical(init(c))
    for n, step in enumerate(trace, 1):
        match = [
            t
            for t in reduced_successors(c, s)
            if (t.action, t.args, t.outcome) == (step.action, step.args, step.outcome)
            and canonical(t.state) == canonical(step.state)
        ]
        assert match, f"step {n} ({step.action} {step.args} -> {step.outcome}) is not enabled"
        s = canonical(match[0].state)
    return s


def assert_minimal(c: Ctx, res: CheckResult, names: set[str]) -> None:
    """Each named violation replays through the spec and is as short as any run that breaks it."""
    for name in names:
        v = res.violations[name]
        last = replay(c, v.trace)
        inv = INVARIANTS[name]
        if inv.kind == "state":
            assert inv.check is not None and inv.check(c, last) is not None, "the trace ends in a good state"
    # the checker picks the shallowest stuck state for liveness; nothing more to compare there
    safety = {n for n in names if INVARIANTS[n].kind != "liveness"}
    want = shortest_depths(c, safety)
    for name in safety:
        got = len(res.violations[name].trace)
        assert got == want[name], f"{name}: trace of {got} steps, a {want[name]}-step run exists"


# --- profiles ------------------------------------------------------------------------------------


def profile_params() -> list[object]:
    return [pytest.param(p, marks=pytest.mark.slow) if p in SLOW_PROFILES else p for p in PROFILE_CONFIGS]


@pytest.mark.parametrize("profile", profile_params())
def test_profile_default_verdict(profile: str, explored: Explored) -> None:
    """v4.10: no violation. v4.7 and modern: exactly their documented findings."""
    cfg = PROFILE_CONFIGS[profile]
    c = Ctx.of(cfg)
    res, _ = explored(cfg)
    assert res.complete
    assert set(res.violations) == set(PROFILES[profile].findings) - set(finding_configs(profile)), (
        res.violations.keys()
    )
    if profile not in SLOW_PROFILES:
        assert_minimal(c, res, set(res.violations))


@pytest.mark.parametrize(("profile", "name"), [(p, n) for p in PROFILES for n in finding_configs(p)])
def test_finding_out_of_default_reach_reproduced(profile: str, name: str) -> None:
    """A finding its profile's default bounds cannot reach (v4.7's M3/M4 and M19) is reproduced in its
    own configuration, by a shortest trace, with no undocumented violation beside it."""
    c = Ctx.of(finding_configs(profile)[name])
    res = check(c)
    assert res.complete and name in res.violations
    assert set(res.violations) <= set(PROFILES[profile].findings), res.violations.keys()
    assert_minimal(c, res, {name})


def test_every_profile_has_a_default_config() -> None:
    assert set(PROFILE_CONFIGS) == set(PROFILES)


def test_findings_name_real_invariants() -> None:
    for p in PROFILES.values():
        assert set(p.findings) <= set(INVARIANTS), p.name


# --- variants ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_caught_minimally(name: str, explored: Explored) -> None:
    v = VARIANTS[name]
    c = Ctx.of(variant_config(v))
    res, _ = explored(variant_config(v))
    assert res.complete
    caught = set(v.breaks) & set(res.violations)
    assert caught, f"{name} breaks none of {v.breaks}; found {sorted(res.violations)}"
    assert_minimal(c, res, caught)
    # stop_on_violation stops at the first bad layer and reports the same shortest trace length
    first = check(c, stop_on_violation=True)
    assert first.violations
    depths = shortest_depths(c, {n for n in first.violations if INVARIANTS[n].kind != "liveness"})
    for inv, viol in first.violations.items():
        if inv in depths:
            assert len(viol.trace) == depths[inv] == len(res.violations[inv].trace)


def test_minor_exhaustion_is_not_a_leak() -> None:
    """v4.10 with two devices and one reserved minor: the second probe fails ENOMEM in
    ida_alloc_minor, before device_initialize(); the kernel frees the half-made dax_dev right there,
    so the run must end with nothing leaked."""
    cfg = Config(devices=2, nr_minors=1, files=0, vmas=0, cpus=0, mmaps=())
    res = check(Ctx.of(cfg))
    assert "no_leak_at_quiescence" not in res.violations, res.violations["no_leak_at_quiescence"].message


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_needs_its_deviation(name: str) -> None:
    """The same configuration on the unmodified profile does not break what the variant breaks,
    unless the profile documents it as a finding (M21 and rebind-cdev-init are modern itself)."""
    v = VARIANTS[name]
    cfg = variant_config(v)
    base = replace(cfg, variant=None)
    res = check(Ctx.of(base))
    expected = set(v.base.findings)
    assert set(res.violations) <= expected, sorted(res.violations)
    if not v.changes:
        assert set(v.breaks) & expected, "a variant with no change must be a documented finding"


def test_variant_configs_name_their_profile() -> None:
    for v in VARIANTS.values():
        cfg = variant_config(v)
        assert isinstance(cfg, Config) and cfg.profile == v.base.name and cfg.variant == v.name
        assert set(v.breaks) <= set(INVARIANTS), v.name
