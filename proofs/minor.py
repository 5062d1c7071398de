"""Minor uniqueness and an exact minor ida for any number of devices, regions and generations.

The spec's invariants (spec/invariants.py) proved here:

* ``minor_unique``: no two unreleased device instances share a minor, so a stale fd can never reach a
  new device through a reused devt (docs/semantics.md#minors-and-names; M22);
* ``ida_exact``: dax_minor_ida holds exactly the minors devices still hold
  (docs/semantics.md#minors-and-names, #release-callbacks);
* ``minors_in_range``: every held minor is below the count alloc_chrdev_region reserved (M19).

Devices are an uninterpreted sort, so "any number" is literal: every device of every region and
generation is one element. A device is fresh, then live (``ida_alloc_id`` made it; phase creating or
live in spec/state.py), then gone (phase released). The steps that touch minors are read off the
profile (``rules_of``), never restated per kernel version:

* ``ida_alloc_minor`` (spec/admin.py): the lowest free minor, below the ida's bound when the profile's
  ida is bounded (4.12+; M19 turns it off);
* ``ida_free_minor`` when a program of the profile runs it (v4.7 unregister; M22);
* the release of the device (spec/kobject.py dev_release), which frees the minor when the lifetime is
  the cdev kobject's and ``minor_freed_at`` is "release". When the release runs is decided by the
  reference counts (proofs/lifetime.py proves those); here it may run at any moment, again a superset;
* ``kfree`` when a program runs it (M18): the device is gone without its release callback.

Strengthening invariants, each needed by the induction:

* ``minor_held_while_live``: a live device that got a minor still holds it. This is the whole reason
  minors are unique, and it is exactly what v4.7 (and M22) break: the minor returns to the ida at
  unregister while open files keep the device live;
* ``held_minors_distinct``: two devices holding a minor hold different ones (the ida hands out free
  minors only);
* ``ida_owner``: a ghost ``owner`` names, for each allocated minor, the device holding it: the
  existential half of ``ida_exact`` made first-order (the same trick as the ghost numbering of
  proofs/ghost.py);
* ``device_phases``: fresh devices have no minor, no device is both live and gone, held minors are
  non-negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import z3

from devdax.proofs.agreement import Mismatch, Side, agree, explore, spec_moves
from devdax.proofs.engine import (
    ActionFn,
    Inv,
    St,
    Sys,
    becomes,
    check_inductive,
    check_reaches,
    forall,
    invariant_obligations,
    show,
    universe,
)
from devdax.proofs.runner import Obligation, Verdict
from devdax.proofs.smt import Term
from devdax.spec.ctx import Ctx
from devdax.spec.profiles import Lifetime, Profile
from devdax.spec.state import D_CREATING, D_FAILED, D_LIVE, D_RELEASED
from devdax.spec.state import State as SpecState

DEV = z3.DeclareSort("DEV")
B, N = z3.BoolSort(), z3.IntSort()


@dataclass(frozen=True)
class MinorRules:
    """What the profile does with minors, read from its switches and admin programs."""

    bounded: bool  # Profile.minor_ida_bounded: ida_alloc_max(.., nr_reserved - 1)
    free_at_unregister: bool  # a program runs ida_free_minor (v4.7 unregister_dax_dev; M22)
    free_at_release: bool  # dev_release frees it (cdev-kobject lifetime, minor_freed_at release)
    kfree_path: bool  # a program runs kfree (M18): gone without the release callback


def rules_of(p: Profile) -> MinorRules:
    steps = {e.rstrip("!") for prog in (p.create, p.create_failed, p.remove, p.bind, p.unbind) for e in prog}
    return MinorRules(
        bounded=p.minor_ida_bounded,
        free_at_unregister="ida_free_minor" in steps,
        free_at_release=p.lifetime is Lifetime.CDEV_KOBJECT and p.minor_freed_at == "release",
        kfree_path="kfree" in steps,
    )


def _q2(body: Term) -> Term:
    d, e = z3.Consts("d e", DEV)
    return z3.ForAll([d, e], body(d, e))


def _free(s: St, d: Term) -> dict[str, Term]:
    """The minor of d goes back to the ida; the device keeps the number (spec: minor stays set)."""
    return {"held": z3.Store(s["held"], d, False), "ida": z3.Store(s["ida"], s["minor"][d], False)}


def _create(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    """ida_alloc_id: a fresh device instance starts being created (any region, any generation)."""
    d = z3.Const(f"d@{tag}", DEV)
    return z3.And(
        z3.Not(s["live"][d]), z3.Not(s["gone"][d]), becomes(s, t, live=z3.Store(s["live"], d, True))
    ), {"d": d}


def _alloc(rules: MinorRules, s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    """ida_alloc_minor: the lowest free minor (spec/state.py ida_alloc), below the bound if any."""
    d, m = z3.Const(f"d@{tag}", DEV), z3.Int(f"m@{tag}")
    bound = m < s["nr"] if rules.bounded else z3.BoolVal(True)
    k = z3.Int(f"k@{tag}")
    lowest = z3.ForAll([k], z3.Implies(z3.And(k >= 0, k < m), s["ida"][k]))
    minor, held = z3.Store(s["minor"], d, m), z3.Store(s["held"], d, True)
    ida, owner = z3.Store(s["ida"], m, True), z3.Store(s["owner"], m, d)
    effect = becomes(s, t, minor=minor, held=held, ida=ida, owner=owner)
    guard = [s["live"][d], s["minor"][d] == -1, m >= 0, bound, z3.Not(s["ida"][m]), lowest]
    return z3.And(*guard, effect), {"d": d, "m": m}


def _free_minor(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    """ida_free_minor at unregister: the device may stay live (open files hold it)."""
    d = z3.Const(f"d@{tag}", DEV)
    return z3.And(s["held"][d], becomes(s, t, **_free(s, d))), {"d": d}


def _release(rules: MinorRules, s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    """The device's last reference is gone (dev_release / dax_dev_free)."""
    d = z3.Const(f"d@{tag}", DEV)
    gone = {"live": z3.Store(s["live"], d, False), "gone": z3.Store(s["gone"], d, True)}
    upd = {**gone, **_free(s, d)} if rules.free_at_release else gone
    effect = becomes(s, t, **upd)
    if rules.free_at_release:  # dev_release frees only a minor the device still holds
        effect = z3.If(s["held"][d], effect, becomes(s, t, **gone))
    return z3.And(s["live"][d], effect), {"d": d}


def _kfree(s: St, t: St, tag: str) -> tuple[Term, dict[str, Term]]:
    """M18: kfree after device_initialize: gone, and no release callback returns the minor."""
    d = z3.Const(f"d@{tag}", DEV)
    gone = becomes(s, t, live=z3.Store(s["live"], d, False), gone=z3.Store(s["gone"], d, True))
    return z3.And(s["live"][d], gone), {"d": d}


def _init(s: St) -> Term:
    """No device exists yet; the ida is empty; the reserved range is not empty."""
    return z3.And(
        s["nr"] > 0,
        forall(N, lambda m: z3.Not(s["ida"][m]), "m"),
        forall(
            DEV,
            lambda d: z3.And(
                z3.Not(s["live"][d]), z3.Not(s["gone"][d]), s["minor"][d] == -1, z3.Not(s["held"][d])
            ),
            "d",
        ),
    )


def _tidy(s: St, k: int) -> Term:
    """At most k devices are not fresh, and minors and the reserved count are at most k + 1."""
    cs = [z3.Const(f"tidy{i}", DEV) for i in range(k)]
    return z3.And(
        s["nr"] <= k + 1,
        forall(
            DEV,
            lambda d: z3.And(
                s["minor"][d] <= k + 1,
                z3.Or(*(d == c for c in cs), z3.And(z3.Not(s["live"][d]), z3.Not(s["gone"][d]))),
            ),
            "d",
        ),
    )


INVARIANTS: list[Inv[St]] = [
    Inv(
        "minor_unique",
        "no two unreleased devices share a minor",
        lambda s: _q2(
            lambda d, e: z3.Implies(
                z3.And(d != e, s["live"][d], s["live"][e], s["minor"][d] >= 0),
                s["minor"][d] != s["minor"][e],
            )
        ),
        "minor_unique",
        kind="spec",
        bmc_first=True,
    ),
    Inv(
        "ida_exact",
        "dax_minor_ida holds exactly the minors devices hold",
        lambda s: z3.And(
            forall(DEV, lambda d: z3.Implies(s["held"][d], s["ida"][s["minor"][d]]), "d"),
            forall(
                N,
                lambda m: z3.Implies(
                    s["ida"][m], z3.And(s["held"][s["owner"][m]], s["minor"][s["owner"][m]] == m)
                ),
                "m",
            ),
        ),
        "ida_exact",
        kind="spec",
        bmc_first=True,
    ),
    Inv(
        "minors_in_range",
        "every held minor lies inside the reserved chrdev range",
        lambda s: forall(DEV, lambda d: z3.Implies(s["held"][d], s["minor"][d] < s["nr"]), "d"),
        "minors_in_range",
        kind="spec",
        bmc_first=True,
    ),
    Inv(
        "minor_held_while_live",
        "a live device that got a minor still holds it",
        lambda s: forall(
            DEV, lambda d: z3.Implies(z3.And(s["live"][d], s["minor"][d] >= 0), s["held"][d]), "d"
        ),
        "minor_unique",
    ),
    Inv(
        "held_minors_distinct",
        "two devices holding a minor hold different minors",
        lambda s: _q2(
            lambda d, e: z3.Implies(
                z3.And(s["held"][d], s["held"][e], s["minor"][d] == s["minor"][e]), d == e
            )
        ),
        "minor_unique",
    ),
    Inv(
        "device_phases",
        "fresh devices hold nothing; live and gone exclude; held minors are >= 0",
        lambda s: forall(
            DEV,
            lambda d: z3.And(
                z3.Implies(
                    z3.And(z3.Not(s["live"][d]), z3.Not(s["gone"][d])),
                    z3.And(s["minor"][d] == -1, z3.Not(s["held"][d])),
                ),
                z3.Not(z3.And(s["live"][d], s["gone"][d])),
                s["minor"][d] >= -1,
                z3.Implies(s["held"][d], s["minor"][d] >= 0),
            ),
            "d",
        ),
        "minor_unique",
    ),
]


def system(rules: MinorRules) -> Sys:
    actions: dict[str, ActionFn] = {
        "ida_alloc_id": _create,
        "ida_alloc_minor": partial(_alloc, rules),
        "release": partial(_release, rules),
    }
    if rules.free_at_unregister:
        actions["ida_free_minor"] = _free_minor
    if rules.kfree_path:
        actions["kfree"] = _kfree
    return Sys(
        vars={
            "live": (DEV, B),
            "gone": (DEV, B),
            "minor": (DEV, N),
            "held": (DEV, B),
            "ida": (N, B),
            "owner": (N, DEV),
            "nr": N,
        },
        init=_init,
        actions=actions,
        invariants=INVARIANTS,
        render=render,
        frozen=("nr",),
        tidy=_tidy,
    )


def render(m: Term, states: Sequence[St], params: Sequence[dict[str, Term]]) -> list[list[str]]:
    """Each state as the devices that are not fresh (one line each) and the allocated minors among
    those any device or step mentions (an ida is an infinite set; the rest is empty or irrelevant)."""

    def ev(x: Term) -> Term:
        return m.eval(x, model_completion=True)

    devs = universe(m, DEV)
    minors = {ev(s["minor"][d]).as_long() for s in states for d in devs}
    minors |= {ev(v).as_long() for p in params for v in p.values() if z3.is_int(v)}
    minors.discard(-1)
    out = []
    for s in states:
        lines = []
        for d in devs:
            live, gone = z3.is_true(ev(s["live"][d])), z3.is_true(ev(s["gone"][d]))
            if not live and not gone:
                continue
            held = "held" if z3.is_true(ev(s["held"][d])) else "not held"
            phase = "live" if live else "released"
            lines.append(f"{show(m, d)}: {phase}, minor {ev(s['minor'][d])} ({held})")
        ida = sorted(x for x in minors if z3.is_true(ev(s["ida"][x])))
        lines.append(f"dax_minor_ida = {{{', '.join(map(str, ida))}}}  (reserved minors: {ev(s['nr'])})")
        out.append(lines or ["no device yet"])
    return out


def minor_obligations(p: Profile) -> list[Obligation]:
    """The minor invariants of profile ``p`` as obligations (``minor_`` names), preceded by
    non-vacuity."""
    sys = system(rules_of(p))

    def vacuity(timeout: float) -> Verdict:
        """Two devices created and given minors: the invariants describe states with several minors."""

        def two_held(states: Sequence[St]) -> Term:
            a, b = z3.Const("d@run0", DEV), z3.Const("d@run2", DEV)
            return z3.And(a != b, states[-1]["held"][a], states[-1]["held"][b])

        return check_reaches(
            sys, ("ida_alloc_id", "ida_alloc_minor", "ida_alloc_id", "ida_alloc_minor"), two_held, timeout
        )

    out = [
        Obligation(
            "minor_not_vacuous", "a run reaches two devices holding minors", "proofs/minor.py", vacuity
        )
    ]
    check = partial(check_inductive, sys)
    return out + invariant_obligations("minor_", "devices", "proofs/minor.py", sys.invariants, check)


# --------------------------------------------------------------------------------------------------
# Agreement with the spec's explicit successors
# --------------------------------------------------------------------------------------------------

#: per device instance (live, gone, minor, held), dax_minor_ida as a bitmask, the reserved minors
MinorObs = tuple[tuple[tuple[bool, bool, int, bool], ...], int, int]


def abstract(c: Ctx, s: SpecState) -> MinorObs:
    """The abstraction function: a spec state as this model's (non-ghost) variables. Device instance i
    is model element i; ``live`` is "ida_alloc_id made it and it is not released" (creating, live or a
    failed creation still holding references), ``gone`` is released; the minor number stays set after
    it is freed, as in the model's ``_free``."""
    devs = tuple(
        (d.phase in (D_CREATING, D_LIVE, D_FAILED), d.phase == D_RELEASED, d.minor, d.minor_held)
        for d in s.devs
    )
    return devs, s.minors, c.nr_reserved_minors()


def pin(s: St, o: MinorObs, elems: Sequence[Term]) -> Term:
    """Constrain a symbolic state to ``o``: element i is device instance i, every other element is a
    fresh device (never created), the ida holds exactly the mask's bits. The ghost ``owner`` is free."""
    devs, ida, nr = o
    live, gone, minor, held = z3.K(DEV, False), z3.K(DEV, False), z3.K(DEV, z3.IntVal(-1)), z3.K(DEV, False)
    for x, (lv, gn, mn, hd) in zip(elems, devs, strict=True):
        live, gone = z3.Store(live, x, lv), z3.Store(gone, x, gn)
        minor, held = z3.Store(minor, x, mn), z3.Store(held, x, hd)
    bits = z3.K(N, False)
    for i in range(ida.bit_length()):
        if ida >> i & 1:
            bits = z3.Store(bits, i, True)
    return z3.And(
        s["live"] == live,
        s["gone"] == gone,
        s["minor"] == minor,
        s["held"] == held,
        s["ida"] == bits,
        s["nr"] == nr,
    )


def check_agreement(
    c: Ctx, rules: MinorRules | None = None, limit: int = 20_000
) -> tuple[int, int, list[Mismatch]]:
    """Every transition of every reachable spec state of ``c`` (at most ``limit`` states) against the
    step relation of ``rules`` (default: read from c's profile; a test plants another one), by
    proofs/agreement.py: (states, visible transitions, mismatches). A spec transition that changes
    the abstraction is a model action, and that action, on the device the solver matched, has no
    outcome that is not a spec successor: the model's effect is the spec's, not merely compatible
    with it (the minor alloc_minor picks is the lowest free one).

    The converse (every model step is a spec step) is not checked: the model lets any device be
    created, given a minor, released or (v4.7) have its minor freed at any moment, where the spec's
    admin programs and reference counts decide when; see tests/proofs/test_minor.py."""
    from devdax.spec.system import init

    sys = system(rules if rules is not None else rules_of(c.prof))
    elems = [z3.Const(f"dev{i}", DEV) for i in range(c.cfg.instances)]
    S, T = sys.fresh("pre"), sys.fresh("post")
    side: Side[MinorObs] = Side(
        [S, T],
        sys.step(S, T, "agree"),
        lambda st, o: pin(st, o, elems),
        objects=elems,
        base=[z3.Distinct(*elems)] if len(elems) > 1 else [],
        incremental=True,
    )
    return agree(explore(init(c), spec_moves(c), limit), lambda s: abstract(c, s), side)
