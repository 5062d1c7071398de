"""Lockstep refinement: hypothesis runs random user programs on impl and on the spec together.

Each rule is one operation a user can trigger: open O_RDWR/O_RDONLY, close, mmap from a menu of
shapes including invalid ones, munmap whole/tail/misaligned, fork_touch, MADV_DONTFORK, the file
calls dax_fops lacks (read, write, fsync, lseek, ioctl, fallocate), touches inside and beyond the
mapping and the device, disable/enable (modern unbind/bind, v4.10 provider removal and re-probe) and
provider removal for both. After every operation tests/refinement/driver.py demands equal outcomes,
abstraction(impl) == spec state (up to renaming of files and vmas) and every spec invariant on the
abstraction except the profile's documented findings. Every profile impl supports is covered.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from devdax.impl.dax import IMPL_PROFILES

from .driver import SHAPES, Driver, spec_config

EXAMPLES = int(os.environ.get("DEVDAX_LOCKSTEP_EXAMPLES", "30"))
STEPS = int(os.environ.get("DEVDAX_LOCKSTEP_STEPS", "25"))
idx = st.integers(0, 7)
unit = st.integers(0, 3)  # 2 units per device, 3 for the oversized shape: beyond ends


class Lockstep(RuleBasedStateMachine):
    profile = "v4.10"
    devices = 1

    def __init__(self) -> None:
        super().__init__()
        self.d = Driver(spec_config(self.profile, devices=self.devices))

    def teardown(self) -> None:
        self.d.close()

    @rule(node=st.integers(0, 1), writable=st.booleans())
    def open(self, node: int, writable: bool) -> None:
        self.d.open(node % self.devices, writable)

    @rule(k=idx)
    def close(self, k: int) -> None:
        self.d.close_file(k)

    @rule(k=idx, shape=st.sampled_from(SHAPES))
    def mmap(self, k: int, shape: object) -> None:
        self.d.mmap(k, shape)  # type: ignore[arg-type]

    @rule(k=idx, part=st.sampled_from(("all", "tail", "misaligned")))
    def munmap(self, k: int, part: str) -> None:
        self.d.munmap(k, part)

    @rule(k=idx, u=unit, write=st.booleans())
    def touch(self, k: int, u: int, write: bool) -> None:
        self.d.touch(k, u, write)

    @rule(k=idx, call=st.sampled_from(("read", "write", "fsync", "lseek", "ioctl", "fallocate")))
    def syscall(self, k: int, call: str) -> None:
        self.d.syscall(k, call)

    @rule(k=idx, u=unit, write=st.booleans())
    def fork_touch(self, k: int, u: int, write: bool) -> None:
        self.d.fork_touch(k, u, write)

    @rule(k=idx)
    def madvise_dontfork(self, k: int) -> None:
        self.d.madvise_dontfork(k)

    @rule(node=st.integers(0, 1))
    def disable(self, node: int) -> None:
        self.d.disable(node % self.devices)

    @rule()
    def remove_provider(self) -> None:
        self.d.remove()

    @rule(node=st.integers(0, 1))
    def enable(self, node: int) -> None:
        self.d.enable(node % self.devices)

    @invariant()
    def ran(self) -> None:
        pass


SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=False,
)


def _machine(profile: str, devices: int) -> type[Lockstep]:
    return type(
        f"Lockstep_{profile.replace('.', '')}_{devices}",
        (Lockstep,),
        {"profile": profile, "devices": devices},
    )


@pytest.mark.timeout(150 * max(1, EXAMPLES // 30))
@pytest.mark.parametrize("devices", [1, 2])
@pytest.mark.parametrize("profile", IMPL_PROFILES)
def test_lockstep(profile: str, devices: int) -> None:
    machine = _machine(profile, devices)
    machine.TestCase.settings = SETTINGS
    machine.TestCase().runTest()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("close_first", [False, True])
def test_f2_eviction_bug_is_one_outcome_in_both(close_first: bool) -> None:
    """F2's eviction BUG, found by this machine on linux-6.12: the file held across the re-bind is
    closed after the removal (the BUG at its close) or before it (the BUG in device_del); both sides
    report the call's own outcome and record the same oops (spec/ctx.py bug, impl's dmesg)."""
    state = _machine("linux-6.12", 1)()
    try:
        state.open(node=0, writable=False)
        state.disable(node=0)
        state.enable(node=0)
        if close_first:
            state.close(k=0)
        state.remove_provider()
        if not close_first:
            state.close(k=0)
        assert state.d.s.oops.startswith("list_del corruption")
        assert state.d.ref.oops.startswith("list_del corruption")
    finally:
        state.teardown()
