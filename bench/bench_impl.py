"""Benchmarks of the device-dax emulation (devdax.impl.bus): a DevDax mapping against the same memory
mapped raw, in one process, repetitions interleaved so that drift hits both sides alike.

What and why (issue 4 "Measure"; targets in bench/RESULTS.md):

* sequential read / write bandwidth (memmove of the whole mapping) through an mmap of /dev/daxX.Y
  vs the region's memfd mapped raw (target >= 0.9x): once a unit is installed the emulation adds
  nothing to an access;
* first touch of 1 GiB at 2M align (and 4K with --with-4k) vs MAP_POPULATE of the same memfd (target
  <= 2x at 2M): every align unit is one fault serviced by the handler process under its SRCU read
  lock. The touch is MADV_POPULATE_READ (the kernel touches every page, each new unit faults into
  the handler) and, for comparison, one Python load per page through DaxFile.mmap(...).view();
* median fault latency: a toucher's round trip for the first touch of a 4K unit vs an installed one
  (UserMapping.touch, the device layer's own path), and the handler's decision time.

Contracts are switched off (DEVDAX_CONTRACTS=0, read when the device layer is imported): they
check the spec's invariants on every call, which is for tests, not for a measurement.

Run: ``.venv/bin/python bench/bench_impl.py [--size-mib 1024] [--reps 7] [--with-4k]``.
Results are collated in bench/RESULTS.md (section "impl: the device layer").
"""

from __future__ import annotations

import os

os.environ.setdefault("DEVDAX_CONTRACTS", "0")

import argparse
import ctypes
import statistics
import time
from collections.abc import Callable

from devdax.impl import sys as dsys
from devdax.impl.bus import DaxBus
from devdax.spec.abi import MAP, PROT

K4, M2 = 4096, 2 << 20
MiB = 1 << 20
RW = PROT["PROT_READ"] | PROT["PROT_WRITE"]
SH = MAP["MAP_SHARED"]


def bandwidth(bus: DaxBus, size: int, reps: int) -> dict[str, float]:
    r = bus.create_region(size, M2)
    f = bus.open(r.devices[0])
    v = f.mmap(size, RW, SH)
    fd = r.backing.backing.fd
    raw = dsys.mmap(0, size, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED, fd, 0)
    buf = ctypes.create_string_buffer(size)
    dst = ctypes.addressof(buf)
    v.madvise(0, size, 23)  # MADV_POPULATE_WRITE: install every unit
    ctypes.memmove(raw, dst, size)  # warm the raw mapping's page tables too
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(reps):
        for name, addr in (("dax", v.base), ("raw", raw)):
            for op, (d_, s_) in (("read", (dst, addr)), ("write", (addr, dst))):
                t0 = time.perf_counter()
                ctypes.memmove(d_, s_, size)
                times.setdefault((name, op), []).append(time.perf_counter() - t0)
    bw = {k: size / statistics.median(t) / 2**30 for k, t in times.items()}
    out = {}
    print(f"bandwidth: {size // MiB} MiB memmove, median of {reps}, interleaved")
    for op in ("read", "write"):
        d, rw = bw[("dax", op)], bw[("raw", op)]
        out[op] = d / rw
        print(
            f"  {op:5}: dax {d:6.2f} GiB/s   raw memfd {rw:6.2f} GiB/s   ratio {d / rw:.3f}  (target >= 0.9)"
        )
    dsys.munmap(raw, size)
    v.munmap()
    f.close()
    bus.remove_region(r)
    return out


def latency(bus: DaxBus, n: int) -> None:
    r = bus.create_region(n * K4, K4)
    f = bus.open(r.devices[0])
    v = f.mmap(n * K4, RW, SH)
    bus.core.table.reset_stats()
    first, again = [], []
    for i in range(n):
        t0 = time.perf_counter_ns()
        v.touch(i * K4)
        first.append(time.perf_counter_ns() - t0)
    for i in range(n):
        t0 = time.perf_counter_ns()
        v.touch(i * K4)
        again.append(time.perf_counter_ns() - t0)
    dec = bus.core.table.latencies_ns("decide")
    a, b = statistics.median(first), statistics.median(again)
    print(f"fault latency: {n} 4K units, medians")
    print(
        f"  UserMapping.touch first touch {a / 1e3:7.1f} us   installed unit {b / 1e3:.1f} us   "
        f"fault service (difference) {(a - b) / 1e3:.1f} us"
    )
    print(
        f"  handler decision              {statistics.median(dec) / 1e3:7.1f} us (message read -> decided, "
        "inside the read section)"
    )
    v.munmap()
    f.close()
    bus.remove_region(r)


def first_touch(bus: DaxBus, size: int, align: int, reps: int) -> float:
    r = bus.create_region(size, align)
    fd = r.backing.backing.fd
    dev = r.devices[0]

    def populate_raw() -> None:
        a = dsys.mmap(0, size, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED | dsys.MAP_POPULATE, fd, 0)
        dsys.munmap(a, size)

    def via(how: str) -> Callable[[], None]:
        def run() -> None:
            f = bus.open(dev)
            v = f.mmap(size, RW, SH)
            if how == "python":
                view = v.view()
                s = 0
                for off in range(0, size, K4):
                    s += view[off]
                view.release()
            else:
                dsys.madvise(v.base, size, dsys.MADV_POPULATE_READ)
            v.munmap()
            f.close()

        return run

    populate_raw()
    bus.core.table.reset_stats()
    times: dict[str, list[float]] = {"pop": [], "python": [], "madvise": []}
    for _ in range(reps):
        for key, fn in (("pop", populate_raw), ("madvise", via("madvise")), ("python", via("python"))):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    faults = bus.core.counters()["faults"] // (2 * reps)
    tp, tm, ty = (statistics.median(times[k]) for k in ("pop", "madvise", "python"))
    name = {K4: "4K", M2: "2M"}[align]
    print(
        f"first touch of {size // MiB} MiB at {name} align ({faults} handler faults per pass), "
        f"median of {reps}"
    )
    print(f"  MAP_POPULATE raw memfd     {tp * 1e3:8.1f} ms")
    print(f"  dax MADV_POPULATE_READ     {tm * 1e3:8.1f} ms   ratio {tm / tp:6.2f}x  (target <= 2x at 2M)")
    print(f"  dax python load per page   {ty * 1e3:8.1f} ms   ratio {ty / tp:6.2f}x")
    bus.remove_region(r)
    return tm / tp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--bw-mib", type=int, default=256)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--faults", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--with-4k", action="store_true", help="also first touch at 4K align (slow)")
    a = ap.parse_args()
    with DaxBus(workers=a.workers) as bus:
        bandwidth(bus, a.bw_mib * MiB, a.reps)
        latency(bus, a.faults)
        first_touch(bus, a.size_mib * MiB, M2, a.reps)
        if a.with_4k:
            first_touch(bus, a.size_mib * MiB, K4, 1)


if __name__ == "__main__":
    main()
