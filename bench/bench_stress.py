"""Stress: touches racing disable/enable/remove of the device they touch (`make fuzz`, after the fuzz).

    .venv/bin/python -m bench.bench_stress [--rounds R] [--cycles C] [--touchers T]

Each round makes a modern region of two devices (4K and 2M align in turn), maps both, and starts T
toucher threads that read and write bytes of the first device's mapping as fast as they can
(process_vm_readv/writev through the fault handler: no bus lock, so they really race), while the
main thread runs C unbind/bind cycles of that device and then removes the region. The second device
is never unbound before the removal: touches of it must always succeed.

Columns, as in the fuzz: stale (an access that succeeded although it started after the device was
killed and ended before it was bound again, or after the removal, or after the munmap), lost (a
byte read back different from the last one written by its owner thread; each thread owns its
bytes), control (a touch of the never-unbound device that failed), leaks (fds, mappings, threads,
child processes after the bus is closed, against before it was made), hangs (an admin call past the
watchdog, or a toucher that does not stop), crash. Why in a child process: the watchdog kills the
process that hangs; the parent counts that as a hang.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devdax.impl.core import MappingCore
from devdax.impl.dax import MAP, DaxBus, DevDax
from tests.fuzz import harness

ROOT = Path(__file__).resolve().parents[1]
K4, M2 = 4096, 2 << 20
SIZE = 4 << 20
RW = 3
COLUMNS = ("stale", "lost", "control", *harness.LEAKS, "hang", "crash")


@dataclass
class Teardown:
    """The admin side's state as touchers see it: an epoch that changes at every transition, and
    whether the device is torn down in it. A touch that saw the same torn-down epoch before and
    after it ran lay entirely inside the teardown."""

    epoch: int = 0
    dead: bool = False
    #: the region's removal has begun: the device that is never unbound goes too
    removing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, dead: bool, removing: bool = False) -> None:
        with self.lock:
            self.epoch += 1
            self.dead = dead
            self.removing = removing

    def get(self) -> tuple[int, bool]:
        with self.lock:
            return self.epoch, self.dead

    def bound(self) -> tuple[int, bool]:
        """(epoch, whether the second device is certainly bound in it)."""
        with self.lock:
            return self.epoch, not self.removing


@dataclass
class Counts:
    touches: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    cycles: int = 0
    removes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, column: str, what: str) -> None:
        with self.lock:
            self.failures[column] += 1
            if len(self.examples) < 20:
                self.examples.append(f"{column}: {what}")


def _toucher(k: int, n: int, base: int, ctl: int, state: Teardown, stop: threading.Event, c: Counts) -> None:
    """Thread k owns the bytes at page offsets i * n + k (plus a byte within the page)."""
    rng = random.Random(k)
    shadow: dict[int, int] = {}
    local: Counter[str] = Counter()
    pages = SIZE // K4
    while not stop.is_set():
        off = (rng.randrange(pages // n) * n + k) * K4 + rng.randrange(K4)
        e0, dead0 = state.get()
        if rng.random() < 0.5:
            v = rng.randrange(256)
            t = MappingCore.touch_write(base + off, bytes([v]))
            if t.outcome == "ok":
                shadow[off] = v
        else:
            t = MappingCore.touch_read(base + off, 1)
            if t.outcome == "ok" and t.data[0] != shadow.get(off, 0):
                c.fail("lost", f"byte {off:#x} read {t.data[0]}, {shadow.get(off, 0)} was written")
        e1, _ = state.get()
        local[t.outcome] += 1
        if t.outcome == "ok" and dead0 and e0 == e1:
            c.fail("stale", f"touch at {off:#x} succeeded inside teardown epoch {e0}")
        if ctl and rng.random() < 0.05:
            e0, bound = state.bound()
            tc = MappingCore.touch_read(ctl + off, 1)
            local[f"control {tc.outcome}"] += 1
            if tc.outcome != "ok" and bound and state.get()[0] == e0:
                c.fail("control", f"touch of the bound device at {off:#x}: {tc.outcome}")
    with c.lock:
        c.touches.update(local)


def _admin(what: str, fn: Any, *args: object) -> object:
    """One admin call under the watchdog (a hang kills the process; the parent counts it)."""
    signal.setitimer(signal.ITIMER_REAL, harness.CALL_TIMEOUT)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _round(bus: DaxBus, i: int, cycles: int, touchers: int, c: Counts) -> None:
    align = (K4, M2)[i % 2]
    r = bus.create_region(2 * SIZE, align, [SIZE, SIZE])
    d0, d1 = r.devices
    f0, f1 = bus.open(d0), bus.open(d1)
    v0, v1 = f0.mmap(SIZE, RW, MAP["MAP_SHARED"]), f1.mmap(SIZE, RW, MAP["MAP_SHARED"])
    state, stop = Teardown(), threading.Event()
    ts = [
        threading.Thread(target=_toucher, args=(k, touchers, v0.addr, v1.addr, state, stop, c), daemon=True)
        for k in range(touchers)
    ]
    for t in ts:
        t.start()
    rng = random.Random(i)
    dev: DevDax = d0
    for _ in range(cycles):
        _admin("disable", bus.disable, dev)
        state.set(dead=True)
        time.sleep(rng.random() / 1000)
        state.set(dead=False)
        _admin("enable", bus.enable, dev)
        time.sleep(rng.random() / 1000)
        c.cycles += 1
    state.set(dead=False, removing=True)  # the removal kills both devices, the first one last
    _admin("remove_region", bus.remove_region, r)
    state.set(dead=True, removing=True)
    c.removes += 1
    time.sleep(0.05)  # touchers keep trying the removed device for a while
    stop.set()
    for t in ts:
        t.join(harness.CALL_TIMEOUT)
    if any(t.is_alive() for t in ts):
        c.fail("hang", f"round {i}: a toucher did not stop")
        raise SystemExit(2)
    addrs = (v0.addr, v1.addr)
    for v in (v0, v1):
        _admin("munmap", v.munmap)
    for a in addrs:
        if MappingCore.touch_read(a, 1).outcome == "ok":
            c.fail("stale", f"round {i}: {a:#x} readable after munmap")
    f0.close()  # held across d0's re-binds: F2's eviction BUG goes to dmesg (docs/findings.md)
    f1.close()
    bus.release_backing(r.backing)


def child(rounds: int, cycles: int, touchers: int, out: str) -> None:
    c = Counts()

    def dump() -> None:
        with open(out + ".tmp", "w") as f:
            json.dump(
                {
                    "touches": c.touches,
                    "failures": c.failures,
                    "examples": c.examples,
                    "cycles": c.cycles,
                    "removes": c.removes,
                },
                f,
            )
        os.replace(out + ".tmp", out)

    with harness.watchdog():
        before = harness.snapshot()
        bus = DaxBus(workers=2)
        try:
            for i in range(rounds):
                _round(bus, i, cycles, touchers, c)
                dump()
        finally:
            _admin("close", bus.close)
        for column, what in harness.leaks(before).items():
            c.fail(column, what)
        dump()


def main(args: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=100, help="unbind/bind cycles per round")
    ap.add_argument("--touchers", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(args)
    if a.child:
        child(a.rounds, a.cycles, a.touchers, a.child)
        return 0
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    os.unlink(out)
    t0 = time.monotonic()
    flags = ["--rounds", str(a.rounds), "--cycles", str(a.cycles), "--touchers", str(a.touchers)]
    p = subprocess.run(
        [sys.executable, "-m", "bench.bench_stress", *flags, "--child", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    got: dict[str, Any] = {}
    if os.path.exists(out):
        with open(out) as fh:
            got = json.load(fh)
        os.unlink(out)
    failures: Counter[str] = Counter(dict(got.get("failures", {})))
    examples = [str(e) for e in got.get("examples", [])]
    if p.returncode == -signal.SIGALRM:
        failures["hang"] += 1
        examples.append(f"hang: {p.stderr[-1500:]}")
    elif p.returncode != 0:
        failures["crash"] += 1
        examples.append(f"crash (exit {p.returncode}): {p.stderr[-1500:]}")
    touches: Counter[str] = Counter(dict(got.get("touches", {})))
    print(
        f"devdax stress: {got.get('cycles', 0):,} unbind/bind cycles and {got.get('removes', 0)} removals "
        f"raced by {a.touchers} toucher threads, {sum(touches.values()):,} touches in {wall:.0f} s wall, "
        f"{platform.machine()}, nproc {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
    )
    print("\ntouch outcome      count")
    for label, n in touches.most_common():
        print(f"{label:<18} {n:>10,}")
    print("\nfailure            count")
    for column in COLUMNS:
        print(f"{column:<18} {failures[column]:>5}")
    for e in examples[:20]:
        print("\n" + e)
    return 1 if sum(failures.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
