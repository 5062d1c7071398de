"""Micro-benchmarks of the impl/ mmap core (devdax.impl.core.MappingCore) against raw memfd mappings.

What and why (targets in bench/RESULTS.md):

* sequential read / write bandwidth through a core mapping vs the same memfd mapped raw (target
  >= 0.9x): once a unit is installed the core adds nothing to an access, and this checks it;
* fault service latency: the handler's own service time (message read -> ioctl done) and the
  round trip a toucher sees (process_vm_readv of one byte of a fresh 4K unit);
* first touch of 1 GiB at 4K and at 2M align vs MAP_POPULATE of the same memory (target <= 2x at 2M):
  the cost of routing every unit through a user-space handler. "First touch" is measured two ways:
  a Python loop touching one byte per page through a memoryview (faults taken with the GIL held) and
  MADV_POPULATE_READ (the kernel touches every page, each fault still goes to the handler).

Run: ``.venv/bin/python bench/bench_core.py [--size-mib 1024] [--reps 5] [--skip-4k]``. Prints medians
and ratios; nothing is written (bench/RESULTS.md is collated by hand).
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from collections.abc import Callable

from devdax.impl import sys as dsys
from devdax.impl.core import MappingCore

K4, M2 = 4096, 2 << 20
MiB = 1 << 20


def touch_pages(addr: int, length: int) -> None:
    """One load per 4K page from Python: every fault is taken with this interpreter's GIL held."""
    view = memoryview((ctypes.c_char * length).from_address(addr)).cast("B")
    s = 0
    for off in range(0, length, K4):
        s += view[off]


def bandwidth(core: MappingCore, size: int, reps: int) -> None:
    b = core.create_backing(size)
    d = core.add_device(b, [(0, size)], M2)
    m = core.map_shared(d, size)
    raw = dsys.mmap(0, size, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED, b.fd, 0)
    buf = ctypes.create_string_buffer(size)
    dst = ctypes.addressof(buf)
    dsys.madvise(m.addr, size, dsys.MADV_POPULATE_WRITE)  # install every unit (through the handler)
    ctypes.memmove(raw, dst, size)  # warm the raw mapping's PTEs too
    # interleave core and raw in every repetition, so that drift (other tenants, frequency) hits both
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(reps):
        for name, addr in (("core", m.addr), ("raw", raw)):
            for op, (d_, s_) in (("read", (dst, addr)), ("write", (addr, dst))):
                t0 = time.perf_counter()
                ctypes.memmove(d_, s_, size)
                times.setdefault((name, op), []).append(time.perf_counter() - t0)
    bw = {k: size / statistics.median(v) / 2**30 for k, v in times.items()}
    print(f"bandwidth {size // MiB} MiB memmove, median of {reps} (interleaved):")
    for op in ("read", "write"):
        c, r = bw[("core", op)], bw[("raw", op)]
        print(f"  {op:5}: core {c:6.2f} GiB/s  raw {r:6.2f} GiB/s  ratio {c / r:.3f}")
    dsys.munmap(raw, size)
    core.unmap(m)
    core.remove_device(d)
    core.close_backing(b)


def latency(core: MappingCore, n: int) -> None:
    size = n * K4
    b = core.create_backing(size)
    d = core.add_device(b, [(0, size)], K4)
    m = core.map_shared(d, size)
    core.table.reset_stats()
    rt = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        core.touch_read(m.addr + i * K4, 1)
        rt.append(time.perf_counter_ns() - t0)
    warm = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        core.touch_read(m.addr + i * K4, 1)
        warm.append(time.perf_counter_ns() - t0)
    dec = core.table.latencies_ns("decide")
    ioc = core.table.latencies_ns("ioctl")
    fault, hit = statistics.median(rt), statistics.median(warm)
    print(f"fault latency over {n} 4K faults (medians):")
    print(
        f"  toucher round trip   {fault / 1e3:7.1f} us (installed page: {hit / 1e3:.1f} us; "
        f"fault service = difference {(fault - hit) / 1e3:.1f} us)"
    )
    print(f"  handler decision     {statistics.median(dec) / 1e3:7.1f} us (message read -> decided)")
    print(
        f"  handler ioctl        {statistics.median(ioc) / 1e3:7.1f} us (CONTINUE wall time, includes "
        f"preemption by the woken toucher)"
    )
    core.unmap(m)
    core.remove_device(d)
    core.close_backing(b)


def grace_period(core: MappingCore, n: int) -> None:
    """synchronize() with idle readers: three membarrier calls plus two slot scans."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        core.synchronize()
        ts.append(time.perf_counter_ns() - t0)
    print(f"grace period (synchronize, idle handler), median of {n}: {statistics.median(ts) / 1e3:.1f} us")


def first_touch(core: MappingCore, size: int, align: int, reps: int) -> None:
    b = core.create_backing(size)
    d = core.add_device(b, [(0, size)], align)

    def populate_raw() -> None:
        a = dsys.mmap(0, size, dsys.PROT_READ | dsys.PROT_WRITE, dsys.MAP_SHARED | dsys.MAP_POPULATE, b.fd, 0)
        dsys.munmap(a, size)

    def via(how: str) -> Callable[[], None]:
        def run() -> None:
            m = core.map_shared(d, size)
            if how == "python":
                touch_pages(m.addr, size)
            else:
                dsys.madvise(m.addr, size, dsys.MADV_POPULATE_READ)
            core.unmap(m)

        return run

    populate_raw()  # warm-up: page-cache lookups, page-table pages
    core.table.reset_stats()
    times: dict[str, list[float]] = {"pop": [], "python": [], "madvise": []}
    for _ in range(reps):  # interleaved, as for bandwidth
        for key, fn in (("pop", populate_raw), ("python", via("python")), ("madvise", via("madvise"))):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    faults = core.counters()["faults"] // (2 * reps)
    t_pop, t_py, t_mp = (statistics.median(times[k]) for k in ("pop", "python", "madvise"))
    name = {K4: "4K", M2: "2M"}[align]
    print(
        f"first touch {size // MiB} MiB at {name} align ({faults} handler faults per pass), median of {reps}:"
    )
    print(f"  MAP_POPULATE raw      {t_pop * 1e3:8.1f} ms")
    print(f"  python 1 load/page    {t_py * 1e3:8.1f} ms   ratio {t_py / t_pop:6.2f}x")
    print(f"  MADV_POPULATE_READ    {t_mp * 1e3:8.1f} ms   ratio {t_mp / t_pop:6.2f}x")
    core.remove_device(d)
    core.close_backing(b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--bw-mib", type=int, default=256)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--faults", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-4k", action="store_true")
    a = ap.parse_args()
    with MappingCore(workers=a.workers) as core:
        bandwidth(core, a.bw_mib * MiB, a.reps)
        latency(core, a.faults)
        grace_period(core, 200)
        first_touch(core, a.size_mib * MiB, M2, a.reps)
        if not a.skip_4k:
            first_touch(core, a.size_mib * MiB, K4, 1)


if __name__ == "__main__":
    main()
