"""spec.admin.SKIPS: each cheaper skip test says what running its step says, on every reachable
state of the three profiles and the race, for every device instance."""

from __future__ import annotations

import pytest

from devdax.model.checker import check
from devdax.spec.admin import SKIP, SKIPS, STEPS
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State

CONFIGS = {
    "v4.7": Config(profile="v4.7", generations=2),
    "v4.10": Config(generations=2, cpus=2),
    "modern-binds": Config(profile="modern", binds=1, cpus=2),
    "race": Config(profile="v4.10", race=True, cpus=3, faults=2, units=2),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_skip_tests_agree_with_their_steps(name: str) -> None:
    c = Ctx.of(CONFIGS[name])
    states: list[State] = []
    check(c, states=states, symmetry=False, reduce=False)
    assert len(states) > 50
    for s in states:
        for step, skips in SKIPS.items():
            for d in range(len(s.devs)):
                assert skips(c, s, d) == (STEPS[step](c, s, d) == SKIP), (step, d, s)
