"""Random runs of the spec for configurations too large to enumerate: a hypothesis state machine.

The explicit checker (model/checker.py) is exhaustive but only for small bounds. This machine walks
the same Next relation (spec/system.py ``successors``) at bounds no enumeration reaches: two devices
per generation, several generations, four files, vmas and CPUs, fork, partial munmap, read-only
opens, bind cycles. Each step picks one enabled transition; after each step every state invariant is
checked, and every step property is checked on the transition taken. Properties the profile
documents as findings (``Profile.findings``) are skipped, so a modern run fails only on something
new.

A failure is a runnable program (STYLE.md, after hypothesis' own stateful.py): hypothesis prints the
shrunk run as

    state = V410Machine()
    state.step(move=Move(action='open', args=(0, 'O_RDWR'), outcome='ok'))
    state.step(move=Move(action='mmap', args=(0, 'shared-rw'), outcome='ok'))
    ...

and ``replay(cfg, moves)`` (or the same lines against a machine class made by ``machine_for``) runs
it again outside hypothesis. A move names the action, its arguments and its outcome, never a slot
index into a list of successors, so the program stays readable and survives changes to the order in
which the spec lists transitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import Invariant, state_invariants, step_properties
from devdax.spec.state import State
from devdax.spec.system import Transition, init, successors


@dataclass(frozen=True)
class Move:
    """One step of a run as a person reads it: the spec action, its arguments and its outcome."""

    action: str
    args: tuple[object, ...]
    outcome: str

    @staticmethod
    def of(t: Transition) -> Move:
        return Move(t.action, t.args, t.outcome)


class PropertyViolated(AssertionError):
    """A state invariant or a step property broke; the message names it and quotes its source."""


def find(c: Ctx, s: State, move: Move) -> Transition:
    """The enabled transition that `move` names; a clear error when the move is not enabled here."""
    ts = successors(c, s)
    for t in ts:
        if t.action == move.action and t.args == move.args and t.outcome == move.outcome:
            return t
    enabled = ", ".join(f"{t.action}{t.args}->{t.outcome}" for t in ts) or "nothing"
    raise ValueError(f"{move} is not enabled here; enabled: {enabled}")


def check_state(c: Ctx, s: State, invs: Sequence[Invariant]) -> None:
    for inv in invs:
        assert inv.check is not None
        msg = inv.check(c, s)
        if msg is not None:
            raise PropertyViolated(f"{inv.name}: {msg}  [{inv.source}]")


def check_step(c: Ctx, s: State, t: Transition, props: Sequence[Invariant]) -> None:
    for prop in props:
        assert prop.step is not None
        msg = prop.step(c, s, t)
        if msg is not None:
            raise PropertyViolated(f"{prop.name}: {msg}  [{prop.source}] at {Move.of(t)}")


def deadlocked(s: State, enabled: Sequence[Transition]) -> bool:
    """No transition at all while the admin is inside a program: the program can never finish."""
    return not enabled and bool(s.admin.prog)


class DevdaxMachine(RuleBasedStateMachine):
    """The spec as a hypothesis state machine; make a concrete one with ``machine_for(cfg)``."""

    ctx: ClassVar[Ctx]
    skip: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        if not hasattr(type(self), "ctx"):
            raise TypeError(
                "DevdaxMachine has no configuration: use machine_for(Config(...)) to make "
                "a machine class, then run that one"
            )
        self.state = init(self.ctx)
        self.moves: list[Move] = []
        self.invs = [i for i in state_invariants() if i.name not in self.skip]
        self.props = [i for i in step_properties() if i.name not in self.skip]
        self.enabled = successors(self.ctx, self.state)

    @classmethod
    def moves_strategy(cls) -> st.SearchStrategy[Move | None]:
        """One of the transitions enabled in the machine's current state (None when none is)."""

        def pick(m: Any) -> st.SearchStrategy[Move | None]:
            ts: list[Transition] = m.enabled
            if not ts:
                return st.none()
            return st.sampled_from([Move.of(t) for t in ts])

        return st.runner().flatmap(pick)

    def apply(self, move: Move) -> None:
        t = find(self.ctx, self.state, move)
        check_step(self.ctx, self.state, t, self.props)
        self.state = t.state
        self.moves.append(move)
        self.enabled = successors(self.ctx, self.state)

    @rule(move=st.deferred(lambda: DevdaxMachine.moves_strategy()))
    def step(self, move: Move | None) -> None:
        if move is None:
            if "teardown_finishes" not in self.skip and deadlocked(self.state, self.enabled):
                raise PropertyViolated(
                    f"teardown_finishes: admin program '{self.state.admin.prog}' "
                    "can never finish: nothing at all is enabled"
                )
            return
        self.apply(move)

    @invariant()
    def state_invariants_hold(self) -> None:
        check_state(self.ctx, self.state, self.invs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ctx.cfg.describe()}, {len(self.moves)} moves)"


def machine_for(
    cfg: Config, skip: Iterable[str] | None = None, name: str | None = None
) -> type[DevdaxMachine]:
    """A machine class over cfg. By default it skips the profile's documented findings; pass skip
    to choose (an empty tuple checks everything)."""
    c = Ctx.of(cfg)
    skipped = frozenset(c.prof.findings if skip is None else skip)
    cls_name = name or "Machine_" + "".join(ch if ch.isalnum() else "_" for ch in c.prof.name)
    return type(cls_name, (DevdaxMachine,), {"ctx": c, "skip": skipped})


def replay(cfg: Config, moves: Iterable[Move], skip: Iterable[str] | None = None) -> State:
    """Run a printed program again outside hypothesis; raises PropertyViolated where it breaks."""
    m = machine_for(cfg, skip)()
    m.state_invariants_hold()
    for mv in moves:
        m.step(mv)
        m.state_invariants_hold()
    return m.state


#: bounds for random runs, per profile: far beyond what the explicit checker can enumerate
STATEFUL_CONFIGS: dict[str, Config] = {
    "v4.10": Config(
        profile="v4.10",
        devices=2,
        generations=2,
        units=2,
        ranges=1,
        files=4,
        vmas=4,
        cpus=4,
        faults=3,
        fork=True,
        munmap_parts=True,
        open_rdonly=True,
        add_failure=True,
    ),
    "modern": Config(
        profile="modern",
        devices=2,
        generations=2,
        units=2,
        ranges=2,
        files=4,
        vmas=4,
        cpus=4,
        faults=3,
        binds=2,
        fork=True,
        munmap_parts=True,
        open_rdonly=True,
        add_failure=True,
    ),
    "v4.7": Config(
        profile="v4.7",
        devices=2,
        generations=2,
        units=2,
        files=4,
        vmas=4,
        cpus=4,
        faults=3,
        first_fault="pmd",
        fork=True,
        munmap_parts=True,
        open_rdonly=True,
    ),
}
