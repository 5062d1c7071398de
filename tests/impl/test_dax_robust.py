"""Bad input and misuse of the emulation: each a clear OSError(errno) or ValueError naming the
field, never a crash, a hang or a leak (issue 4 item 8)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from devdax.impl.bus import DaxBus
from devdax.impl.device import DevDax
from devdax.impl.file import DaxFile
from devdax.spec.abi import MADV, MAP, MS, PROT

pytestmark = pytest.mark.timeout(60)

M2 = 2 << 20
RW = PROT["PROT_READ"] | PROT["PROT_WRITE"]
SH = MAP["MAP_SHARED"]


@pytest.fixture
def dev(bus: DaxBus) -> Iterator[DevDax]:
    r = bus.create_region(8 * M2, M2)
    yield r.devices[0]
    if not r.gone:
        bus.remove_region(r)


@pytest.fixture
def f(bus: DaxBus, dev: DevDax) -> Iterator[DaxFile]:
    fl = bus.open(dev)
    yield fl
    for a in list(fl.areas):
        a.handle.munmap()
    if not fl.closed:
        fl.close()


def errno_of(fn: object, *args: object) -> int:
    assert callable(fn)
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno or 0


@pytest.mark.parametrize(
    "args,field",
    [
        (("4M", RW, SH, 0), "length"),
        ((-1, RW, SH, 0), "length"),
        ((M2, 99, SH, 0), "prot"),
        ((M2, RW, True, 0), "flags"),
        ((M2, RW, SH, -4096), "offset"),
        ((M2, RW, SH, 0, "x"), "fixed_addr"),
        ((M2, RW, SH | MAP["MAP_FIXED"], 0), "fixed_addr"),
    ],
)
def test_mmap_bad_arguments_name_the_field(f: DaxFile, args: tuple[object, ...], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        f.mmap(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "length,flags,offset,code",
    [
        (0, SH, 0, errno.EINVAL),
        (M2, 0, 0, errno.EINVAL),  # no mapping type
        (M2, MAP["MAP_PRIVATE"], 0, errno.EINVAL),
        (M2, SH | MAP["MAP_HUGETLB"], 0, errno.EINVAL),
        (M2, SH, 4096, errno.EINVAL),  # offset misaligned to align
        (M2, SH, 1, errno.EINVAL),  # offset not page aligned
        (M2 + 4096, SH, 0, errno.EINVAL),  # length not a multiple of align
        (M2, MAP["MAP_SHARED_VALIDATE"] | MAP["MAP_HUGE_2MB"], 0, errno.EOPNOTSUPP),
    ],
)
def test_mmap_errnos(f: DaxFile, length: int, flags: int, offset: int, code: int) -> None:
    assert errno_of(f.mmap, length, RW, flags, offset) == code
    assert f.areas == [] and f.f_count.count == 1


def test_mmap_access_modes(bus: DaxBus, dev: DevDax) -> None:
    ro, wo = bus.open(dev, os.O_RDONLY), bus.open(dev, os.O_WRONLY)
    assert errno_of(ro.mmap, M2, RW, SH) == errno.EACCES
    assert errno_of(wo.mmap, M2, PROT["PROT_READ"], SH) == errno.EACCES
    v = ro.mmap(M2, PROT["PROT_READ"], SH)
    assert errno_of(v.mprotect, 0, M2, RW) == errno.EACCES
    v.msync(0, M2, MS["MS_SYNC"])  # succeeds: no VM_SHARED, so nothing to write back
    v.munmap()
    ro.close()
    wo.close()


def test_open_bad_arguments(bus: DaxBus, dev: DevDax) -> None:
    with pytest.raises(ValueError, match="dev"):
        bus.open("/dev/dax0.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flags"):
        bus.open(dev, -1)
    assert errno_of(bus.open, dev, os.O_RDWR | os.O_DIRECT) == errno.EINVAL
    assert errno_of(bus.open, dev, os.O_ACCMODE) == errno.EINVAL


def test_closed_handles_and_double_close(f: DaxFile) -> None:
    v = f.mmap(M2, RW, SH)
    f.close()
    assert errno_of(f.close) == errno.EBADF
    for call, args in (
        (f.mmap, (M2, RW, SH)),
        (f.read, (10,)),
        (f.write, (b"x",)),
        (f.fsync, ()),
        (f.lseek, (0,)),
        (f.ioctl, (0x541B,)),
        (f.fallocate, (0, 0, 4096)),
    ):
        assert errno_of(call, *args) == errno.EBADF
    assert v.touch(0, True, 1) == "ok"  # the vma keeps the file
    v.munmap()
    assert f.f_count.released


def test_fops_outcomes(bus: DaxBus, dev: DevDax) -> None:
    f, ro = bus.open(dev), bus.open(dev, os.O_RDONLY)
    assert errno_of(f.read, 4096) == errno.EINVAL
    assert errno_of(f.write, 4096) == errno.EINVAL
    assert errno_of(ro.write, b"abc") == errno.EBADF
    assert errno_of(f.fsync) == errno.EINVAL
    assert f.lseek(1 << 20) == 0
    assert errno_of(f.ioctl, 0x541B) == errno.ENOTTY
    assert errno_of(f.fallocate, 0, 0, 4096) == errno.ENODEV
    assert errno_of(ro.fallocate, 0, 0, 4096) == errno.EBADF
    with pytest.raises(ValueError, match="length"):
        f.read(-1)
    with pytest.raises(ValueError, match="data"):
        f.write(1.5)  # type: ignore[arg-type]
    f.close()
    ro.close()


def test_use_after_munmap(f: DaxFile) -> None:
    v = f.mmap(2 * M2, RW, SH)
    v.munmap()
    assert v.unmapped
    assert v.touch(0) == "SIGSEGV" and v.check(0, 0) == "SIGSEGV"
    assert v.fork_touch(0) == "SIGSEGV"
    v.munmap()  # munmap of nothing is fine
    assert errno_of(v.mprotect, 0, M2, RW) == errno.ENOMEM
    assert errno_of(v.madvise, 0, M2, MADV["MADV_DONTFORK"]) == errno.ENOMEM
    assert errno_of(v.msync, 0, M2, MS["MS_ASYNC"]) == errno.ENOMEM
    assert errno_of(v.mremap, 0, M2, 2 * M2) == errno.EFAULT
    assert errno_of(v.view) == errno.EFAULT


@pytest.mark.parametrize(
    "call,args,field",
    [
        ("touch", ("a",), "offset"),
        ("touch", (0, True, 300), "value"),
        ("check", (0, -1), "value"),
        ("munmap", (0, -5), "length"),
        ("mprotect", (0, M2, 64), "prot"),
        ("madvise", (0, M2, -1), "advice"),
        ("msync", (0, M2, 1 << 20), "flags"),
        ("mremap", (0, M2, -1), "new_length"),
    ],
)
def test_vma_bad_arguments(f: DaxFile, call: str, args: tuple[object, ...], field: str) -> None:
    v = f.mmap(2 * M2, RW, SH)
    with pytest.raises(ValueError, match=field):
        getattr(v, call)(*args)
    v.munmap()


def test_range_errnos(f: DaxFile) -> None:
    v = f.mmap(4 * M2, RW, SH)
    assert errno_of(v.munmap, 1, M2) == errno.EINVAL  # not page aligned
    assert errno_of(v.munmap, 4096, 4096) == errno.EINVAL  # may_split
    assert errno_of(v.munmap, 0, 0) == errno.EINVAL
    assert errno_of(v.madvise, 0, M2, MADV["MADV_FREE"]) == errno.EINVAL
    assert errno_of(v.madvise, 0, M2, MADV["MADV_REMOVE"]) == errno.ENODEV
    assert errno_of(v.madvise, 0, M2, 12345) == errno.EINVAL
    assert errno_of(v.msync, 0, M2, MS["MS_SYNC"] | MS["MS_ASYNC"]) == errno.EINVAL
    assert errno_of(v.msync, 0, M2, MS["MS_SYNC"]) == errno.EINVAL
    assert errno_of(v.mremap, 0, 4 * M2, 3 * M2 // 2) == errno.EINVAL
    assert errno_of(v.mprotect, 0, 8 * M2, RW) == errno.ENOMEM
    v.munmap()


def test_admin_bad_arguments(bus: DaxBus) -> None:
    with pytest.raises(ValueError, match="align"):
        bus.create_region(8 * M2, 12345)
    with pytest.raises(ValueError, match="size"):
        bus.create_region(3 * 4096, M2)
    with pytest.raises(ValueError, match="profile"):
        bus.create_region(2 * M2, M2, profile="v2.6")
    with pytest.raises(ValueError, match="devices"):
        bus.create_region(2 * M2, M2, [[(4096, M2)]])
    r = bus.create_region(2 * M2, M2)
    bus.remove_region(r)
    assert errno_of(bus.remove_region, r) == errno.ENODEV


def test_closed_bus_refuses() -> None:
    b = DaxBus()
    r = b.create_region(2 * M2, M2)
    b.close()
    b.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        b.create_region(2 * M2, M2)
    with pytest.raises(ValueError, match="closed"):
        b.open(r.devices[0])


# -------------------------------------------------------------- issue 14, classes 4 to 7 --------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": "x"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"workers": 0}, "workers"),
        ({"workers": 2.5}, "workers"),
        ({"events": 5}, "events"),
        ({"minor_ida": "ida"}, "minor_ida"),
    ],
)
def test_a_bad_bus_argument_starts_nothing(kwargs: dict[str, object], field: str) -> None:
    """Class 5: refused before the handler process, the userfaultfd and the memfd exist."""
    fds, kids = set(os.listdir("/proc/self/fd")), _children()
    with pytest.raises(ValueError, match=field):
        DaxBus(**kwargs)  # type: ignore[arg-type]
    assert set(os.listdir("/proc/self/fd")) <= fds and _children() <= kids


def _children() -> set[str]:
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as fh:
            return set(fh.read().split())
    except OSError:
        return set()


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((16 * M2, 4096.0), {}, "align"),
        ((16 * M2, M2), {"devices": 5}, "devices"),
        ((16 * M2, M2), {"devices": "abc"}, "devices"),
        ((16 * M2, M2), {"devices": [[1, 2, 3]]}, "devices"),
    ],
)
def test_wrong_argument_types_are_value_errors(
    bus: DaxBus, args: tuple[object, ...], kwargs: dict[str, object], field: str
) -> None:
    """Class 4: a wrong type is a ValueError naming the argument, not a TypeError from inside."""
    with pytest.raises(ValueError, match=field):
        bus.create_region(*args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="region"):
        bus.remove_region(None)  # type: ignore[arg-type]
    for call in (bus.disable, bus.enable, bus.open):
        with pytest.raises(ValueError, match="dev"):
            call(None)  # type: ignore[arg-type]


def test_objects_of_another_bus_are_refused(bus: DaxBus, dev: DevDax) -> None:
    """Class 6: another bus's device would be acted on under this bus's lock."""
    with DaxBus() as other:
        for call in (other.disable, other.enable, other.open):
            with pytest.raises(ValueError, match="another DaxBus"):
                call(dev)
        with pytest.raises(ValueError, match="another DaxBus"):
            other.remove_region(dev.region)
    assert dev.bound


@pytest.mark.parametrize(
    "devices",
    [
        [[(0, 4 * M2)], [(2 * M2, 4 * M2)]],  # the second starts inside the first
        [[(0, 8 * M2)], [(2 * M2, 2 * M2)]],  # nested
        [[(0, 2 * M2), (4 * M2, 2 * M2)], [(M2 * 5, M2)]],
    ],  # inside the first device's second range
)
def test_overlapping_device_spans_are_refused(bus: DaxBus, devices: list[list[tuple[int, int]]]) -> None:
    """Class 7: as the kernel's resource tree refuses a range claimed twice."""
    with pytest.raises(ValueError, match="overlaps"):
        bus.create_region(16 * M2, M2, devices)
    r = bus.create_region(16 * M2, M2, [[(0, 2 * M2)], [(2 * M2, 2 * M2)]])  # touching is fine
    bus.remove_region(r)
