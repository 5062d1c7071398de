"""Random runs at bounds the explicit checker cannot enumerate (model/stateful.py).

v4.10 and modern must survive them apart from their documented findings; and the machine must be
able to fail: with a variant's bug switched on it finds the violation, and the
program it prints replays to the same failure.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from devdax.model.stateful import (
    STATEFUL_CONFIGS,
    DevdaxMachine,
    Move,
    PropertyViolated,
    machine_for,
    replay,
)
from devdax.spec.config import Config
from devdax.spec.variants import VARIANTS, variant_config

RUNS = settings(
    max_examples=50,
    stateful_step_count=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: module-level machine classes, so a printed failure can be pasted below them and run
V410Machine = machine_for(STATEFUL_CONFIGS["v4.10"], name="V410Machine")
ModernMachine = machine_for(STATEFUL_CONFIGS["modern"], name="ModernMachine")


def test_v410_random_runs() -> None:
    assert V410Machine.skip == frozenset(V410Machine.ctx.prof.findings)
    run_state_machine_as_test(V410Machine, settings=RUNS)


def test_modern_random_runs_only_documented_findings() -> None:
    assert ModernMachine.skip == frozenset(ModernMachine.ctx.prof.findings) != frozenset()
    run_state_machine_as_test(ModernMachine, settings=RUNS)


@pytest.mark.parametrize(
    "variant, config",
    [
        ("M5", None),
        ("no-synchronize", Config(race=True, cpus=3, faults=2, units=2, files=1, vmas=1, first_fault="pmd")),
    ],
)
def test_machine_finds_a_variant_bug(variant: str, config: Config | None) -> None:
    v = VARIANTS[variant]
    cfg = variant_config(v) if config is None else replace(config, profile=v.base.name, variant=variant)
    machine = machine_for(cfg, name=f"Variant_{variant.replace('-', '_')}")
    # generation only: finding is quick, shrinking these dependent draws takes tens of seconds
    # (the shrunk program for M5 is the 17-line probe, open, mmap, fault run)
    with pytest.raises(PropertyViolated) as err:
        run_state_machine_as_test(machine, settings=settings(RUNS, max_examples=500, phases=[Phase.generate]))
    assert any(err.value.args[0].startswith(name + ":") for name in v.breaks + ("no_map_of_dead_device",)), (
        err.value.args[0]
    )


def test_printed_program_replays() -> None:
    """The failing program hypothesis prints is made of Moves; replaying such a program gives the
    same violation. Here: M5's shortest program (probe, open, mmap, fault)."""
    cfg = variant_config(VARIANTS["M5"])
    m = machine_for(cfg)()
    # a run to the first fault insert, chosen the way a reader of the printout would: by name
    moves: list[Move] = []
    order = ("fault_insert", "fault_check", "fault_unlock", "fault_lock", "mmap", "open", "admin")
    while True:
        ts = [
            t
            for t in m.enabled
            if t.state != m.state and t.action in order and (t.action != "admin" or t.args[0] == "probe")
        ]
        t = min(ts, key=lambda t: order.index(t.action))
        mv = Move.of(t)
        moves.append(mv)
        if t.action == "fault_insert":
            break
        m.step(mv)
    with pytest.raises(PropertyViolated, match="no_sleep_in_rcu"):
        replay(cfg, moves)
    # without the last step the same program is clean
    replay(cfg, moves[:-1])


def test_unknown_move_names_what_is_enabled() -> None:
    m = V410Machine()
    with pytest.raises(ValueError, match="is not enabled here; enabled: admin"):
        m.step(Move("close", (0,), "ok"))


def test_base_machine_needs_a_config() -> None:
    with pytest.raises(TypeError, match="machine_for"):
        DevdaxMachine()


V47_M8 = (
    "spec/profiles.py: v4.7 has no ->split (has_split=False), so munmap of a vma's first page "
    "leaves a misaligned vma (M8, 9702cffdbf21 fixed it in 4.15): vmas_aligned is broken by the "
    "faithful v4.7 profile but is not in V47.findings; the default v4.7 config has no "
    "munmap_parts, so `devdax check` never sees it"
)


def test_v47_bounded_run_only_documented_findings() -> None:
    """Bounded breadth-first run of v4.7 with partial munmaps (bounded: see test_spec_units for
    why the space is infinite)."""
    from devdax.model.checker import check
    from devdax.spec.ctx import Ctx

    c = Ctx.of(Config(profile="v4.7", munmap_parts=True, files=1, vmas=1, cpus=0, first_fault="pmd"))
    res = check(c, max_states=3000, liveness=False)
    assert set(res.violations) <= set(c.prof.findings), sorted(res.violations)
