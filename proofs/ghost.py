"""The ghost numbering: one reusable lemma for "a count equals the number of its holders".

A count of a set is not first-order, so every counter proof here carries a ghost bijection between
the live objects of a sort and 0..n-1 (Hyperkernel's refcount lemma, Ivy's counters): with
``numbered`` an invariant, ``cdev_ref == cdev_live + nfiles`` *is* "the cdev count equals the open
files plus cdev_add's own reference", for any number of files. Creating an object appends it
(``appended``); freeing one moves the last number into the hole (``removed``), so the numbers stay
0..n-1 without gaps. proofs/refcount.py (v4.7) numbers files, each file's vmas and all vmas this
way; proofs/lifetime.py (v4.10, modern) numbers files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import z3

from devdax.proofs.smt import Term


@dataclass(frozen=True)
class Owner:
    """Numberings per owner (each file numbers its own vmas): ``of`` maps an object to its owner,
    ``live`` says which owners exist; ``slot`` and ``n`` are then arrays indexed by the owner."""

    sort: Term
    live: Callable[[Term], Term]
    of: Callable[[Term], Term]


def numbered(
    sort: Term,
    live: Callable[[Term], Term],
    idx: Term,
    slot: Term,
    n: Term,
    owner: Owner | None = None,
) -> Term:
    """idx and slot are inverse between the live objects and 0..n-1: each live object has a number
    below n that names it, and each number below n names a live object that has it."""
    x, i = z3.Const("x", sort), z3.Int("i")
    if owner is None:
        return z3.And(
            n >= 0,
            z3.ForAll([x], z3.Implies(live(x), z3.And(idx[x] >= 0, idx[x] < n, slot[idx[x]] == x))),
            z3.ForAll([i], z3.Implies(z3.And(i >= 0, i < n), z3.And(live(slot[i]), idx[slot[i]] == i))),
        )
    o = z3.Const("o", owner.sort)
    mine = owner.of(x)
    return z3.And(
        z3.ForAll([o], z3.Implies(owner.live(o), n[o] >= 0)),
        z3.ForAll([x], z3.Implies(live(x), z3.And(idx[x] >= 0, idx[x] < n[mine], slot[mine][idx[x]] == x))),
        z3.ForAll(
            [o],
            z3.ForAll(
                [i],
                z3.Implies(
                    z3.And(owner.live(o), i >= 0, i < n[o]),
                    z3.And(live(slot[o][i]), owner.of(slot[o][i]) == o, idx[slot[o][i]] == i),
                ),
            ),
        ),
    )


def appended(idx: Term, slot: Term, n: Term, x: Term) -> tuple[Term, Term, Term]:
    """(idx, slot, n) after x is created: it takes the number n."""
    return z3.Store(idx, x, n), z3.Store(slot, n, x), n + 1


def removed(idx: Term, slot: Term, n: Term, x: Term) -> tuple[Term, Term, Term]:
    """(idx, slot, n) after x is freed: the last object takes x's number."""
    j, last = idx[x], slot[n - 1]
    return z3.Store(idx, last, j), z3.Store(slot, j, last), n - 1
