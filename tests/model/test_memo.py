"""model/memo.py: a call is memoised only when its probe shows it read nothing it was not given.

test_fast_paths.py compares whole runs with the plain checker; these tests plant the calls that
must not be memoised (one that reads another CPU, one that writes one, user calls behind the
mmap_lock guard that reads every CPU) and check that each runs on the real state instead.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devdax.model import memo
from devdax.model.memo import Memo, Peeked
from devdax.model.reduction import fused_cpu_steps
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import Invariant, state_invariants
from devdax.spec.state import Cpu, State, set_at
from devdax.spec.symmetry import sorted_cpus
from devdax.spec.system import Transition, init, successors

USES: dict[str, Callable[[object], object]] = {
    "field": lambda x: x.pc,  # type: ignore[attr-defined]
    "index": lambda x: x[0],  # type: ignore[index]
    "iteration": lambda x: list(x),  # type: ignore[call-overload]
    "len": lambda x: len(x),  # type: ignore[arg-type]
    "truth": lambda x: bool(x),
    "equality": lambda x: x == Cpu(),
    "reflected equality": lambda x: Cpu() == x,
    "order": lambda x: sorted([Cpu(), x]),  # type: ignore[type-var]
    "hash": lambda x: hash(x),
    "membership": lambda x: 0 in x,  # type: ignore[operator]
    "printing": lambda x: f"{x}",
    "repr": lambda x: repr(x),
}


@pytest.mark.parametrize("use", list(USES))
def test_unread_peeks_on_every_use(use: str) -> None:
    # memo.UNREAD, never a global here: pytest asks a test module's globals what they are
    with pytest.raises(Peeked):
        USES[use](memo.UNREAD)


def test_peeked_passes_through_except_exception() -> None:
    """The spec cannot take a peek for an error of its own and carry on."""
    with pytest.raises(Peeked):
        try:
            memo.UNREAD.pc  # noqa: B018
        except Exception:
            pytest.fail("Peeked was caught as an Exception")


RACE = Config(profile="v4.10", race=True, cpus=2, faults=2, units=2, files=1, vmas=1)


def memo_of(c: Ctx, cpu_steps: Callable[[Ctx, State, int], list[Transition]]) -> Memo:
    return Memo(c, cpu_steps, state_invariants(), lambda action: [], symmetry=True)


def probed(m: Memo, s: State, i: int) -> object:
    """memo.cpu as the checker calls it: PROBE_AFTER times on the real state, then probed."""
    sid = m.sid(s)
    for _ in range(memo.PROBE_AFTER):
        assert m.cpu(sid, i, s.cpus[i], len(s.cpus)) is None
    return m.cpu(sid, i, s.cpus[i], len(s.cpus))


def test_cpu_steps_memoised_equal_the_real_ones() -> None:
    c = Ctx.of(RACE)
    s = init(c)
    m = memo_of(c, fused_cpu_steps)
    moves = probed(m, s, 0)
    assert isinstance(moves, tuple) and moves
    real = fused_cpu_steps(c, s, 0)
    assert len(moves) == len(real)
    for mv, t in zip(moves, real, strict=True):
        assert mv.via == (t.action, t.args, t.outcome)
        assert m.state(mv.sid, set_at(s.cpus, 0, mv.cpu)) == t.state


def test_a_step_that_reads_another_cpu_runs_on_the_real_state() -> None:
    def peeking(c: Ctx, s: State, i: int) -> list[Transition]:
        if s.cpus[1 - i].nest:  # reads the other CPU
            return []
        return fused_cpu_steps(c, s, i)

    c = Ctx.of(RACE)
    assert probed(memo_of(c, peeking), init(c), 0) is None


def test_a_step_that_writes_another_cpu_runs_on_the_real_state() -> None:
    def writing(c: Ctx, s: State, i: int) -> list[Transition]:
        return [
            t._replace(state=t.state._replace(cpus=set_at(t.state.cpus, 1 - i, Cpu())))
            for t in fused_cpu_steps(c, s, i)
        ]

    c = Ctx.of(RACE)
    assert probed(memo_of(c, writing), init(c), 0) is None


def test_invariants_reading_cpus_are_judged_on_each_state() -> None:
    c = Ctx.of(RACE)
    m = memo_of(c, fused_cpu_steps)
    verdicts = m.verdicts(m.sid(init(c)))
    assert not [inv for inv, msg in verdicts if msg is not None]
    judged = {inv.name for inv, msg in verdicts if msg is None}
    assert "lock_balanced" in judged
    assert "refcount_exact" not in judged
    assert verdicts == m.verdicts_of(init(c))


def test_canonical_numbering_equals_canonical_states() -> None:
    c = Ctx.of(Config(files=2, vmas=2, cpus=2, generations=1))
    m = memo_of(c, fused_cpu_steps)
    from devdax.spec.symmetry import canonical

    for s in states_of(c, 400):
        sid, vmap = m.canon(m.sid(s))
        assert m.state(sid, sorted_cpus(s.cpus, vmap)) == canonical(s)


def states_of(c: Ctx, limit: int = 2000) -> list[State]:
    """The first states reached breadth-first, raw (not canonical)."""
    out = [init(c)]
    seen = set(out)
    for s in out:
        if len(out) >= limit:
            break
        for t in successors(c, s):
            if t.state not in seen:
                seen.add(t.state)
                out.append(t.state)
    return out


def test_sorted_movers_are_the_specs_movers_on_sorted_cpus() -> None:
    from devdax.model.checker import sorted_movers
    from devdax.spec.system import movers

    c = Ctx.of(Config(profile="v4.10", race=True, cpus=4, faults=2, units=2))
    m = memo_of(c, fused_cpu_steps)
    for s in states_of(c, 500):
        cpus = tuple(sorted(s.cpus))
        assert sorted_movers(tuple(m.cpu_id(x) for x in cpus)) == list(movers(cpus))


def test_a_property_that_peeked_once_is_not_probed_again() -> None:
    """_verdicts gives a property that peeked on an earlier probe None (judge on the real state)
    without running it, and still runs the others: the verdicts are those of probing each."""
    inv = {i.name: i for i in state_invariants()}
    props = [inv["lock_balanced"], inv["vmas_shared"]]
    ran: list[str] = []

    def run(prop: Invariant) -> str | None:
        ran.append(prop.name)
        if prop.name == "lock_balanced":
            raise Peeked
        return None

    peeked: set[str] = set()
    first = memo._verdicts(props, run, peeked)
    second = memo._verdicts(props, run, peeked)
    assert first == second == ((inv["lock_balanced"], None),)
    assert peeked == {"lock_balanced"} and ran == ["lock_balanced", "vmas_shared", "vmas_shared"]
    assert memo._verdicts(props, run) == first and ran[-2:] == ["lock_balanced", "vmas_shared"]
