"""Movers reduction (Lipton): fuse fault steps that no other actor can observe in between.

The spec keeps every step of a fault separate, as the kernel executes them. For exploration, two
adjacent steps of one CPU can run as one transition when the first is a right mover or the second a
left mover with respect to every other actor:

* read-lock then check: taking the read lock writes only the CPU's own nesting count. The one actor
  that reads it is synchronize_start (which marks readers already inside). A reader that locked
  before synchronize_start but checks alive after it is indistinguishable, for every property we
  check, from one that locked and checked just after it: if it saw alive == false it inserts
  nothing; if it saw alive == true then alive was cleared later, and that interleaving is reachable
  with lock and check adjacent as well.
* insert then unlock, and a failed check then unlock: the unlock writes only the CPU's nesting and
  its pre-grace-period mark, and only synchronize_wait reads those; it cannot run between them
  while the reader is pre-existing, and for a later reader the unlock changes nothing it reads.

What is lost is only the states in which a CPU sits between the fused steps. tests/model checks,
on small configurations, that reduced and unreduced runs give the same verdicts and the same set of
states once those in-between states are projected away.
"""

from __future__ import annotations

from typing import Final

from devdax.spec import fault
from devdax.spec.ctx import Ctx
from devdax.spec.state import C_DONE, C_IDLE, C_LOCKED, R_FALLBACK, State
from devdax.spec.system import Transition, cpu_steps, movers, others

FUSED: Final = ("fault_lock", "fault_insert")


def _then(c: Ctx, t: Transition, i: int) -> Transition:
    """Run CPU i's follow-up steps after t as long as they are fused with it: check after lock,
    unlock after a failed check or an insert, and the mm's retry one size down after FALLBACK
    (unlock and re-lock of the same CPU, observable by nobody in between)."""
    s, action, outcome = t.state, t.action, t.outcome
    parts: list[tuple[str, str]] = [(action, outcome)]

    def run(name: str, r: tuple[str, State] | None) -> bool:
        nonlocal s
        if r is None:
            return False
        parts.append((name, r[0]))
        s = r[1]
        return True

    if action == "fault_lock":
        run("fault_check", fault.fault_check(c, s, i))
    while s.cpus[i].pc == C_DONE:
        run("fault_unlock", fault.fault_unlock(c, s, i))
        cpu = s.cpus[i]
        if (
            cpu.pc == C_IDLE
            and cpu.result == R_FALLBACK
            and cpu.nest == 0
            and run("fault_lock", fault.fault_lock(c, s, i, cpu.vma, cpu.addr))
        ):
            run("fault_check", fault.fault_check(c, s, i))
    if len(parts) == 1:
        return t
    name = "+".join(p for p, _ in parts)
    return Transition(name, t.args, "/".join(o for _, o in parts), s)


def fused_cpu_steps(c: Ctx, s: State, i: int) -> list[Transition]:
    """CPU i's steps, each run on through the steps fused with it."""
    return [_then(c, t, i) if t.action in FUSED else t for t in cpu_steps(c, s, i)]


def reduced_successors(c: Ctx, s: State) -> list[Transition]:
    out = others(c, s)
    for i in movers(s.cpus):
        out.extend(fused_cpu_steps(c, s, i))
    return out


def in_between(s: State) -> bool:
    """A state the reduction never stores: some CPU between two fused steps."""
    return any(
        cpu.pc in (C_LOCKED, C_DONE) or (cpu.pc == C_IDLE and cpu.result == R_FALLBACK and cpu.nest == 0)
        for cpu in s.cpus
    )
