"""Plain-Python touches of device memory (memoryview: every fault taken with the GIL held) running
while another thread drives the admin side (unbind/bind cycles with real grace periods) of another
device: nothing may deadlock, every byte read is the byte written, and the device that stays bound
never SIGBUSes ("watch the GIL": impl/handler.py)."""

from __future__ import annotations

import os
import threading

import pytest

from devdax.impl.bus import DaxBus
from devdax.spec.abi import MAP, PROT

pytestmark = pytest.mark.timeout(120)

K4 = 4096
RW = PROT["PROT_READ"] | PROT["PROT_WRITE"]


def test_gil_holding_faults_vs_unbind_cycles() -> None:
    size = 8 << 20
    with DaxBus(workers=2) as bus:
        r = bus.create_region(2 * size, K4, [size, size])
        d0, d1 = r.devices
        f0, f1 = bus.open(d0), bus.open(d1, os.O_RDWR)
        v0 = f0.mmap(size, RW, MAP["MAP_SHARED"])
        v1 = f1.mmap(size, RW, MAP["MAP_SHARED"])
        fd = r.backing.backing.fd
        pattern = bytes(i % 251 for i in range(size // K4))
        for i, b in enumerate(pattern):  # write behind the mapping: every page differs
            os.pwrite(fd, bytes([b]), i * K4)
        view = v0.view()
        got: list[int] = []
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                got.extend(view[i * K4] for i in range(size // K4))  # 2048 faults, GIL held in each
            except BaseException as e:  # pragma: no cover
                errors.append(e)

        outcomes: list[str] = []

        def admin() -> None:
            try:
                for k in range(5):
                    bus.disable(d1)
                    outcomes.append(v1.touch(k * K4))
                    bus.enable(d1)
                    outcomes.append(v1.touch(k * K4, True, k))
            except BaseException as e:  # pragma: no cover
                errors.append(e)

        ts = [threading.Thread(target=reader), threading.Thread(target=admin)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(90)
        assert not any(t.is_alive() for t in ts), "deadlock"
        assert errors == []
        assert bytes(got) == pattern
        assert outcomes == ["SIGBUS", "ok"] * 5
        view.release()
        for v in (v0, v1):
            v.munmap()
        f0.close()
        f1.close()
        assert v0.touch(0) == "SIGSEGV"  # unmapped now: no vma, not a fault
