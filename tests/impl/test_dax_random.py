"""Thousands of random call sequences: the emulation never crashes, hangs or leaks, and every outcome
is the spec's (the model backend's) prediction for the same sequence.

Hypothesis draws scenario files (the devdax-scenario/1 format, validated by its loader) of up to 30
steps over one or two devices: opens with every access mode, mmaps of every shape, range calls that
cut vmas at aligned and misaligned addresses, touches and checks, forks, unbind/bind cycles, and the
calls dax_fops lacks. Each one runs on the spec (SpecBackend) and on the emulation (ImplBackend on
one shared DaxBus, everything the scenario made undone after it). After the run no fd, no mapping of
ours, no thread and no process is left over.

Profiles: modern with bind cycles; v4.10 without enable (its re-probe lays the new generation at a
different physical address in the model, while real memory is the same: the data differ on purpose).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from devdax.impl.bus import DaxBus
from devdax.scenario import format as fmt
from devdax.scenario.impl_backend import ImplBackend
from devdax.scenario.spec_backend import SpecBackend

K4, M2 = 4096, 2 << 20
FDS = ("f0", "f1", "f2")
MAPS = ("m0", "m1", "m2", "m3")

_STATE: dict[str, Any] = {}


def _bus() -> DaxBus:
    """One bus for the whole run; recycled if the spec's re-bind leak pinned devices in it."""
    b: DaxBus | None = _STATE.get("bus")
    if b is not None and len(b.unreleased_devices()) > 16:
        b.close()
        b = None
    if b is None:
        b = DaxBus()
        _STATE["bus"] = b
    return b


def _size(draw: st.DrawFn, align: int, max_units: int) -> int:
    return draw(st.integers(0, max_units)) * align + draw(st.sampled_from([0, 0, 0, K4, 1]))


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    profile = draw(st.sampled_from(["modern", "modern", "modern", "v4.10"]))
    align = draw(st.sampled_from([K4, M2]))
    ndev = draw(st.integers(1, 2))
    steps: list[dict[str, Any]] = []
    fds: set[str] = set()
    maps: set[str] = set()
    lengths: dict[str, int] = {}
    ops = [
        "open",
        "open",
        "close",
        "mmap",
        "mmap",
        "mmap",
        "munmap",
        "mprotect",
        "mremap",
        "touch",
        "touch",
        "touch",
        "check",
        "madvise",
        "msync",
        "disable",
        "fd_call",
    ]
    if profile == "modern":
        ops += ["enable", "enable"]
    if draw(st.booleans()):
        ops.append("fork_touch")
    for _ in range(draw(st.integers(1, 30))):
        op = draw(st.sampled_from(ops))
        if op in ("close", "mmap", "fd_call") and not fds:
            op = "open"
        if (
            op in ("munmap", "mprotect", "mremap", "touch", "check", "madvise", "msync", "fork_touch")
            and not maps
        ):
            op = "open" if not fds else "mmap"
        if op == "open":
            name = draw(st.sampled_from(FDS))
            flags = draw(
                st.sampled_from(
                    [
                        ["O_RDWR"],
                        ["O_RDWR"],
                        ["O_RDONLY"],
                        ["O_WRONLY"],
                        ["O_RDWR", "O_DIRECT"],
                        ["O_RDWR", "O_SYNC"],
                    ]
                )
            )
            steps.append({"op": "open", "dev": draw(st.integers(0, ndev - 1)), "flags": flags, "as": name})
            fds.add(name)
        elif op == "close":
            steps.append({"op": "close", "fd": draw(st.sampled_from(sorted(fds)))})
        elif op == "mmap":
            name = draw(st.sampled_from(MAPS))
            prot = draw(
                st.sampled_from(
                    [
                        ["PROT_READ", "PROT_WRITE"],
                        ["PROT_READ", "PROT_WRITE"],
                        ["PROT_READ"],
                        ["PROT_WRITE"],
                        ["PROT_NONE"],
                    ]
                )
            )
            flags = draw(
                st.sampled_from(
                    [
                        ["MAP_SHARED"],
                        ["MAP_SHARED"],
                        ["MAP_SHARED"],
                        ["MAP_PRIVATE"],
                        ["MAP_SHARED_VALIDATE", "MAP_SYNC"],
                        ["MAP_SHARED", "MAP_POPULATE"],
                        ["MAP_SHARED", "MAP_FIXED"],
                        ["MAP_SHARED"],
                    ]
                )
            )
            step: dict[str, Any] = {
                "op": "mmap",
                "fd": draw(st.sampled_from(sorted(fds))),
                "length": _size(draw, align, 4),
                "prot": prot,
                "flags": flags,
                "offset": draw(st.integers(0, 8)) * align + draw(st.sampled_from([0, 0, 0, K4])),
                "as": name,
            }
            if "MAP_FIXED" in flags or draw(st.integers(0, 5)) == 0:
                step["fixed_offset"] = draw(st.sampled_from([0, 0, K4, align]))
            steps.append(step)
            maps.add(name)
            lengths[name] = (step["length"] + K4 - 1) // K4 * K4
        elif op in ("munmap", "mprotect", "madvise", "msync"):
            m = draw(st.sampled_from(sorted(maps)))
            step = {"op": op, "map": m, "offset": _size(draw, align, 3), "length": _size(draw, align, 3)}
            if op == "mprotect":
                step["prot"] = draw(
                    st.sampled_from([["PROT_READ"], ["PROT_READ", "PROT_WRITE"], ["PROT_NONE"]])
                )
            elif op == "madvise":
                step["advice"] = draw(
                    st.sampled_from(
                        [
                            "MADV_DONTFORK",
                            "MADV_DOFORK",
                            "MADV_DONTNEED",
                            "MADV_NOHUGEPAGE",
                            "MADV_HUGEPAGE",
                            "MADV_POPULATE_READ",
                            "MADV_POPULATE_WRITE",
                            "MADV_REMOVE",
                            "MADV_FREE",
                            "MADV_COLD",
                            "MADV_WILLNEED",
                        ]
                    )
                )
            elif op == "msync":
                step["flags"] = draw(
                    st.sampled_from([["MS_SYNC"], ["MS_ASYNC"], ["MS_INVALIDATE"], ["MS_SYNC", "MS_ASYNC"]])
                )
            steps.append(step)
        elif op == "mremap":
            # old_length = the whole mapping: a shrink of the head of a longer vma leaves a tail vma
            # that the model backend's mremap forgets (devdax/scenario/spec_backend.py _mremap keeps only
            # the slots it had), so the emulation (which keeps it, as the kernel does) would differ
            # A growth is whole align units: impl's MREMAP_MAYMOVE maps the vma anew without its
            # installed entries (impl/README-dax.md), and whether it must move depends on what lies
            # next to the mapping. After a growth to an unaligned end every refault SIGBUSes
            # (check_vma) where the kernel, which moves the page tables, still reads the old entries.
            m = draw(st.sampled_from(sorted(maps)))
            old = lengths[m] or K4
            new = _size(draw, align, 4)
            if new > old:
                new = (new + align - 1) // align * align
            steps.append(
                {"op": "mremap", "map": m, "offset": 0, "old_length": old, "new_length": new, "move": True}
            )
        elif op in ("touch", "check", "fork_touch"):
            m = draw(st.sampled_from(sorted(maps)))
            off = draw(st.integers(0, 5)) * align + draw(st.sampled_from([0, 1, K4 - 1, K4]))
            if op == "check":
                steps.append({"op": "check", "map": m, "offset": off, "value": draw(st.integers(0, 2))})
            else:
                access = draw(st.sampled_from(["read", "write"]))
                step = {"op": op, "map": m, "offset": off, "access": access}
                if op == "touch" and access == "write":
                    step["value"] = draw(st.integers(0, 2))
                steps.append(step)
        elif op in ("disable", "enable"):
            steps.append({"op": op, "dev": draw(st.integers(0, ndev - 1))})
        else:
            fd = draw(st.sampled_from(sorted(fds)))
            steps.append(
                draw(
                    st.sampled_from(
                        [
                            {"op": "read", "fd": fd, "length": 4096},
                            {"op": "write", "fd": fd, "length": 4096},
                            {"op": "fsync", "fd": fd},
                            {"op": "lseek", "fd": fd, "offset": 0, "whence": "SEEK_SET"},
                            {"op": "ioctl", "fd": fd, "request": "FIONREAD"},
                            {"op": "fallocate", "fd": fd, "mode": 0, "offset": 0, "length": 4096},
                        ]
                    )
                )
            )
    size = 16 * align
    devices = [{"size": size // ndev}] * ndev
    return {
        "format": fmt.FORMAT_ID,
        "name": "random",
        "profile": profile,
        "region": {"size": size, "align": align},
        "devices": devices,
        "steps": steps,
    }


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _our_maps() -> list[str]:
    with open("/proc/self/maps") as f:
        return [ln for ln in f if "devdax" in ln]


def _children() -> set[str]:
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            return set(f.read().split())
    except OSError:
        return set()


@settings(
    max_examples=200,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(scenarios())
def _random_sequences(data: dict[str, Any]) -> None:
    sc = fmt.parse(json.loads(json.dumps(data)), "random.json")
    try:
        want = SpecBackend().run(sc)
    except fmt.ScenarioError:
        assume(False)  # the model's own slot bounds (32 files/vmas), not a semantic answer
        return
    # an oops the spec predicts (M21: mmap through a NULL private_data) is the outcome OOPS, and the
    # emulation must report it at the same step, with every later step skipped
    t0 = time.monotonic()
    got = ImplBackend(bus=_bus()).run(sc)
    if os.environ.get("DEVDAX_SLOW_REPORT") and time.monotonic() - t0 > 1:
        print(f"slow example {time.monotonic() - t0:.1f}s:", json.dumps(data))
    fmt.check_outcomes(sc, got)
    if got != want:
        rows = [
            f"{i:2} {s.op:10} model={w:8} impl={g}" + ("   <--" if g != w else "")
            for i, (s, w, g) in enumerate(zip(sc.steps, want, got, strict=True))
        ]
        raise AssertionError("impl disagrees with the spec:\n" + json.dumps(data) + "\n" + "\n".join(rows))


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_random_sequences_agree_with_spec_and_leak_nothing() -> None:
    fds, maps, kids = _fds(), _our_maps(), _children()
    tasks = len(os.listdir("/proc/self/task"))
    try:
        _random_sequences()
    finally:
        b = _STATE.pop("bus", None)
        if b is not None:
            b.close()
    assert _fds() == fds, "leaked fds"
    assert _our_maps() == maps, "leaked mappings"
    assert _children() <= kids, "leaked processes"
    deadline = time.monotonic() + 2
    while len(os.listdir("/proc/self/task")) > tasks and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(os.listdir("/proc/self/task")) <= tasks, "leaked threads"
