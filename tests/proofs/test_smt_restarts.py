"""proofs.smt.prove restarts a query whose attempt timed out with another random seed (a run of
the arithmetic solver can get stuck where another seed answers in 0.1 s), and stops at the
budget: the verdict is still UNKNOWN when every attempt times out, and sat or unsat on the first
answer."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import z3

from devdax.proofs import smt
from devdax.proofs.runner import Status


class Clock:
    """smt's time.monotonic(), advanced by each attempt's whole timeout when it times out."""

    now = 0.0

    @staticmethod
    def monotonic() -> float:
        return Clock.now


class FakeSolver:
    """A z3.Solver whose check() times out under the seeds in `stuck` and is unsat otherwise."""

    stuck: ClassVar[set[int]] = set()
    runs: ClassVar[list[tuple[int, int]]] = []  # (seed, timeout ms) of each attempt

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def set(self, name: str, value: Any) -> None:
        self.params[name] = value

    def add(self, *terms: Any) -> None:
        pass

    def check(self) -> z3.CheckSatResult:
        FakeSolver.runs.append((self.params["random_seed"], self.params["timeout"]))
        if self.params["random_seed"] in FakeSolver.stuck:
            Clock.now += self.params["timeout"] / 1000
            return z3.unknown
        return z3.unsat

    def reason_unknown(self) -> str:
        return "timeout"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeSolver]:
    monkeypatch.setattr(z3, "Solver", FakeSolver)
    monkeypatch.setattr(smt, "time", Clock)
    FakeSolver.runs = []
    return FakeSolver


def query() -> smt.Query:
    x = z3.Int("x")
    return smt.Query([x > 0], x > -1, label="x positive")


def test_a_stuck_seed_is_restarted_with_another(fake: type[FakeSolver]) -> None:
    fake.stuck = {0, 1}
    Clock.now = 0.0
    assert smt.prove([query()], 20.0).status is Status.PROVED
    assert [seed for seed, _ in fake.runs] == [0, 1, 2]
    assert 4_900 <= fake.runs[0][1] <= 5_000  # a quarter of the 20 s budget per attempt


def test_every_seed_stuck_is_unknown_within_the_budget(fake: type[FakeSolver]) -> None:
    fake.stuck = set(range(1000))
    Clock.now = 0.0
    v = smt.prove([query()], 2.0)
    assert v.status is Status.UNKNOWN and v.counterexample == "solver unknown (x positive): timeout"
    assert 1_990 <= sum(ms for _, ms in fake.runs) <= 2_000 + len(fake.runs)  # the budget, no more


def test_the_real_solver_proves_and_refutes() -> None:
    x = z3.Int("x")
    assert smt.prove([query()], 5.0).status is Status.PROVED
    bad = smt.prove([smt.Query([x > 0], x > 5, shown=[("x", x)])], 5.0)
    assert bad.status is Status.VIOLATED and "x = 0x" in bad.counterexample
