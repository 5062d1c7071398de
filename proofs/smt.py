"""The solver layer: the only module that turns Z3 answers into verdicts.

Like mypyvy's ``solver.py``: everything above it states *what* must hold (hypotheses and a goal), this
module decides *how*: a fresh solver per query, the per-obligation budget shared by its queries, and the
rule that only ``unsat`` of the negated goal is a proof. ``sat`` is a violation whose model is rendered
for a person; ``unknown`` (including a timeout) is UNKNOWN, never proved.

Z3 ships no type information, so every Z3 expression is typed :data:`Term` (an alias of ``Any``);
the aliases live here and nowhere else, and the functions that leave this layer return plain Python
values (``Verdict``, ``int``, ``bool``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import z3

from devdax.proofs.runner import Status, Verdict

Term: TypeAlias = Any
"""A z3.ExprRef (bit-vector, Bool, Int or enum). z3 is untyped: this alias contains the ``Any``."""

U64_BITS = 64
ARITH_SOLVER = 2


def bv(name: str, width: int = U64_BITS) -> Term:
    return z3.BitVec(name, width)


def bv_val(value: int, width: int = U64_BITS) -> Term:
    return z3.BitVecVal(value, width)


def as_bool(b: bool | Term) -> Term:
    """Configuration flags may be Python bools (a fixed profile) or Z3 Bools (a symbolic one)."""
    return z3.BoolVal(b) if isinstance(b, bool) else b


def conj(*terms: Term) -> Term:
    return z3.And(*terms) if terms else z3.BoolVal(True)


def member(x: Term, values: Sequence[int]) -> Term:
    """x is one of the concrete values (the sizes and alignments the kernel allows)."""
    return z3.Or(*(x == bv_val(v, x.size()) for v in values))


@dataclass(frozen=True)
class Query:
    """hyps => goal, checked as ``hyps /\\ not goal`` unsat. ``shown`` names the terms a counterexample
    prints, in order; ``label`` says which case of a multi-query obligation failed."""

    hyps: Sequence[Term]
    goal: Term
    shown: Sequence[tuple[str, Term]] = field(default_factory=tuple)
    label: str = ""


def render_value(value: Term) -> str:
    """Numbers in hex (they are addresses, sizes and page offsets), Bools and enums as written."""
    if z3.is_bv_value(value) or z3.is_int_value(value):
        n = value.as_long()
        return f"-{-n:#x}" if n < 0 else f"{n:#x}"
    return str(value)


def render_model(model: Term, shown: Sequence[tuple[str, Term]], label: str) -> str:
    lines = [f"case: {label}"] if label else []
    width = max((len(name) for name, _ in shown), default=0)
    for name, term in shown:
        lines.append(f"{name:<{width}} = {render_value(model.eval(term, model_completion=True))}")
    return "\n".join(lines)


def prove(queries: Sequence[Query], timeout: float) -> Verdict:
    """Prove every query within ``timeout`` seconds in all; the first failure decides the verdict."""
    deadline = time.monotonic() + timeout
    for q in queries:
        if deadline - time.monotonic() <= 0:
            return Verdict(
                Status.UNKNOWN,
                counterexample=f"timeout: budget of {timeout:g}s spent before {q.label or 'the next query'}",
            )
        answer, solver = _check(q, deadline)
        if answer == z3.unsat:
            continue
        if answer == z3.sat:
            return Verdict(Status.VIOLATED, counterexample=render_model(solver.model(), q.shown, q.label))
        reason = solver.reason_unknown()
        where = f" ({q.label})" if q.label else ""
        return Verdict(Status.UNKNOWN, counterexample=f"solver unknown{where}: {reason}")
    return Verdict(Status.PROVED)


#: What share of the time left each of the first RESTARTS attempts at a query gets; the attempt
#: after them gets all of it.
ATTEMPT_SHARE = 0.25
RESTARTS = 2


def _check(q: Query, deadline: float) -> tuple[z3.CheckSatResult, z3.Solver]:
    """One query, restarted with a new random seed when a short attempt times out. A query that
    takes 0.1 s on its own ran into a 120 s timeout in CI (fault_phys_aligned_given_offset, pud
    fault, align 1G, after hundreds of other proofs in the same process): the arithmetic solver's
    path depends on its seed and on the terms built before. So the first RESTARTS attempts get a
    quarter of the time left each, and the last one, with yet another seed, all that is left (over
    half the budget): unsat under any seed is a proof, so this weakens nothing."""
    seed = 0
    while True:
        left = deadline - time.monotonic()
        last = seed >= RESTARTS or left <= 1.0
        solver = z3.Solver()
        solver.set("timeout", max(1, int((left if last else max(1.0, left * ATTEMPT_SHARE)) * 1000)))
        # The divisibility queries (phys % size == 0 through floor divisions by PAGE_SIZE) time out
        # at random under the default arithmetic solver and take ~0.1 s under the older simplex one
        # (measured over several random seeds); bit-vector queries do not care.
        solver.set("arith.solver", ARITH_SOLVER)
        solver.set("random_seed", seed)
        solver.add(*q.hyps)
        solver.add(z3.Not(q.goal))
        answer = solver.check()
        if answer != z3.unknown or last or solver.reason_unknown() != "timeout":
            return answer, solver
        seed += 1


def evaluate(term: Term, env: Mapping[Term, int | bool]) -> int | bool | str:
    """The value of ``term`` once every variable in ``env`` is replaced by its concrete value.

    Bit-vectors come back unsigned, Ints as integers, enum constants by name. Used by the agreement
    tests: the encoding is run on concrete inputs and compared with the Python function it restates.
    Raises if a variable was left free (the term would not simplify to a value).
    """
    pairs = []
    for var, value in env.items():
        if isinstance(value, bool):
            pairs.append((var, z3.BoolVal(value)))
        elif z3.is_int(var):
            pairs.append((var, z3.IntVal(value)))
        else:
            pairs.append((var, z3.BitVecVal(value, var.size())))
    out = z3.simplify(z3.substitute(term, *pairs)) if pairs else z3.simplify(term)
    if z3.is_true(out):
        return True
    if z3.is_false(out):
        return False
    if z3.is_bv_value(out):
        return int(out.as_long())
    if z3.is_int_value(out):
        return int(out.as_long())
    if z3.is_const(out) and out.decl().kind() == z3.Z3_OP_DT_CONSTRUCTOR:
        return str(out)  # an enum constant such as SIGBUS
    raise ValueError(f"term did not reduce to a value: {out}")
