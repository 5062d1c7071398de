"""Random call sequences against MappingCore, checked against a tiny model of what each touch must give.

Why: the unit tests pin single behaviours; this drives interleavings of map / touch / zap / kill /
revive / unmap / remove over multi-range devices and checks every touch's outcome and data against
``geometry.pgoff_to_phys`` and the alive flag, that the handler never hits an unexpected errno, and
that after each run no fd, mapping or thread is left behind.
"""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from devdax.impl.core import Backing, Mapping, MappingCore
from devdax.spec import geometry

pytestmark = pytest.mark.timeout(120)

K4, M2 = 4096, 2 << 20
UNITS = 6


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _maps() -> list[str]:
    with open("/proc/self/maps") as f:
        return [ln for ln in f if "devdax" in ln]


class CoreMachine(RuleBasedStateMachine):
    devices = Bundle("devices")
    mappings = Bundle("mappings")

    def __init__(self) -> None:
        super().__init__()
        self.fds, self.maps0 = _fds(), _maps()
        self.core = MappingCore(workers=2, timeout=10)
        self.backing: dict[int, Backing] = {}
        self.data: dict[tuple[int, int], int] = {}  # (align, backing offset) -> byte written
        self.dev_info: dict[int, tuple[int, tuple[geometry.Range, ...]]] = {}
        self.live_maps: set[int] = set()
        for align in (K4, M2):
            self.backing[align] = self.core.create_backing(UNITS * align)

    @rule(
        target=devices,
        align=st.sampled_from([K4, M2]),
        order=st.permutations(list(range(UNITS))),
        n=st.integers(1, 3),
        alive=st.booleans(),
    )
    def add_device(self, align: int, order: list[int], n: int, alive: bool) -> int:
        spans = [(u * align, align) for u in order[:n]]
        dev = self.core.add_device(self.backing[align], spans, align, alive=alive)
        self.dev_info[dev] = (align, geometry.make_ranges(spans))
        return dev

    @rule(
        target=mappings,
        dev=devices,
        units=st.integers(1, 4),
        pgoff_units=st.integers(0, 3),
        misalign=st.booleans(),
    )
    def map_shared(self, dev: int, units: int, pgoff_units: int, misalign: bool) -> Mapping | None:
        if dev not in self.dev_info:
            return None
        align = self.dev_info[dev][0]
        pgoff = pgoff_units * align // K4 + (1 if misalign and align > K4 else 0)
        try:
            m = self.core.map_shared(dev, units * align, pgoff)
        except OSError as e:
            assert e.errno == errno.EINVAL and misalign
            return None
        self.live_maps.add(id(m))
        return m

    def _expect(self, m: Mapping, off: int) -> tuple[str, tuple[int, int] | None]:
        align, ranges = self.dev_info[m.dev]
        unit_off = off - off % align
        phys = geometry.pgoff_to_phys(ranges, m.pgoff + unit_off // K4, align)
        if phys is None or not self.core.alive(m.dev):
            return "SIGBUS", None
        return "ok", (align, phys + off % align)

    @rule(m=mappings, where=st.integers(0, 4 * M2 - 1), value=st.integers(0, 255), write=st.booleans())
    def touch(self, m: Mapping | None, where: int, value: int, write: bool) -> None:
        if m is None or id(m) not in self.live_maps:
            return
        off = where % m.length
        outcome, key = self._expect(m, off)
        if write:
            t = self.core.touch_write(m.addr + off, bytes([value]))
            assert t.outcome == outcome
            if key is not None:
                self.data[key] = value
        else:
            t = self.core.touch_read(m.addr + off, 1)
            assert t.outcome == outcome
            if key is not None:
                assert t.data == bytes([self.data.get(key, 0)])

    @rule(m=mappings)
    def zap(self, m: Mapping | None) -> None:
        if m is not None and id(m) in self.live_maps:
            self.core.zap(m)

    @rule(dev=devices)
    def kill(self, dev: int) -> None:
        if dev in self.dev_info:
            self.core.kill_device(dev, timeout=5)

    @rule(dev=devices)
    def revive(self, dev: int) -> None:
        if dev in self.dev_info:
            self.core.revive_device(dev)

    @rule(m=mappings)
    def unmap(self, m: Mapping | None) -> None:
        if m is None:
            return
        if id(m) in self.live_maps:
            self.core.unmap(m)
            self.live_maps.discard(id(m))
        else:
            with pytest.raises(ValueError):
                self.core.unmap(m)

    @precondition(lambda self: bool(self.dev_info))
    @rule(data=st.data())
    def remove_device(self, data: st.DataObject) -> None:
        dev = data.draw(st.sampled_from(sorted(self.dev_info)))
        if self.core.mappings(dev):
            with pytest.raises(OSError):
                self.core.remove_device(dev)
        else:
            self.core.remove_device(dev)
            del self.dev_info[dev]

    @invariant()
    def handler_saw_no_unexpected_errno(self) -> None:
        assert self.core.counters()["errors"] == 0

    def teardown(self) -> None:
        self.core.close()
        assert _fds() == self.fds
        assert _maps() == self.maps0


TestCoreMachine = CoreMachine.TestCase
TestCoreMachine.settings = settings(max_examples=15, stateful_step_count=20, deadline=None)
