"""The emulation reports a load through an exec-only mapping as the kernel does on a CPU with
protection keys (spec/geometry.py prot_readable): SIGSEGV, after mmap and after mprotect."""

from __future__ import annotations

import os

import pytest

from devdax.impl import sys as dsys
from devdax.impl.bus import DaxBus

pytestmark = pytest.mark.timeout(60)

M2 = 2 << 20


def test_exec_only_does_not_read(bus: DaxBus) -> None:
    r = bus.create_region(4 * M2, M2)
    f = bus.open(r.devices[0], os.O_RDWR)
    try:
        x = f.mmap(M2, dsys.PROT_EXEC, dsys.MAP_SHARED)
        assert x.touch(0) == "SIGSEGV"
        m = f.mmap(M2, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED)
        assert m.touch(0) == "ok"
        m.mprotect(0, M2, dsys.PROT_EXEC)
        assert m.touch(0) == "SIGSEGV"
        m.mprotect(0, M2, dsys.PROT_WRITE)
        assert m.touch(0) == "ok"  # write-only still reads on x86
    finally:
        f.close()
        bus.remove_region(r)
