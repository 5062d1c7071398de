"""Lifetime of the device-dax emulation (impl/device.py, bus.py): references, releases, minors, teardown.

Each test states the kernel rule it checks (a docs/semantics.md section in the docstring). Every bus
is closed by the fixture, which also checks that no fd, mapping of ours, thread or handler process
outlives it.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections.abc import Iterator

import pytest

from devdax.impl.bus import DaxBus
from devdax.impl.event import Event
from devdax.impl.ida import Ida
from devdax.impl.kobject import KernelBug, Kobject, Kref
from devdax.impl.vma import present_units
from devdax.spec.abi import MAP, PROT

pytestmark = pytest.mark.timeout(60)

K4, M2, G1 = 4096, 2 << 20, 1 << 30
RW = PROT["PROT_READ"] | PROT["PROT_WRITE"]
SH = MAP["MAP_SHARED"]


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _our_maps() -> list[str]:
    with open("/proc/self/maps") as f:
        return [ln for ln in f if "devdax" in ln]


def _tasks(expect: int | None = None) -> int:
    deadline = time.monotonic() + 1.0
    while True:
        n = len(os.listdir("/proc/self/task"))
        if expect is None or n == expect or time.monotonic() > deadline:
            return n
        time.sleep(0.005)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def bus(events: list[Event]) -> Iterator[DaxBus]:
    fds, maps, tasks = _fds(), _our_maps(), _tasks()
    b = DaxBus(events=events, minor_ida=Ida("test-minors", 1 << 20))
    pid = b.core.handler_pid
    try:
        yield b
    finally:
        b.close()
    assert _fds() == fds, "leaked fds"
    assert _our_maps() == maps, "leaked mappings"
    assert _tasks(tasks) <= tasks, "leaked threads"
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def kinds(events: list[Event], obj: str | None = None) -> list[str]:
    return [
        f"{e.kind}:{e.detail}" if e.kind in ("step", "release") else e.kind
        for e in events
        if obj is None or e.obj == obj
    ]


# ------------------------------------------------------------------------------- kref and ida ----


def test_kref_releases_exactly_on_last_put() -> None:
    """lib/kref.c: the release runs once, in the call of the put that reaches zero."""
    runs: list[int] = []
    k = Kref("k", lambda: runs.append(1))
    k.get()
    k.get()
    assert not k.put() and not k.put() and runs == []
    assert k.put() and runs == [1]
    with pytest.raises(KernelBug, match="underflow"):
        k.put()
    with pytest.raises(KernelBug, match="addition on 0"):
        k.get()
    assert not k.get_unless_zero() and runs == [1]


def test_kobject_child_pins_parent_until_its_release() -> None:
    """cdev_add pins the parent; the parent's release waits for the child's (2f0157f, M15)."""
    order: list[str] = []
    parent = Kobject("parent", lambda: order.append("parent"))
    child = Kobject("child", lambda: order.append("child"), parent=parent)
    child.pin_parent()
    assert parent.count == 2
    assert not parent.put() and order == []
    assert child.put() and order == ["child", "parent"]


def test_ida_lowest_free_and_limit() -> None:
    ida = Ida("x", 3)
    assert [ida.alloc() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(OSError) as e:
        ida.alloc()
    assert e.value.errno == errno.ENOMEM
    ida.free(1)
    ida.free(0)
    assert ida.alloc() == 0 and ida.alloc() == 1
    with pytest.raises(KernelBug):
        ida.free(7)
    unbounded = Ida("u")
    assert [unbounded.alloc() for _ in range(300)][-1] == 299  # no 256 limit


# ------------------------------------------------------------------------------------ release ----


@pytest.mark.parametrize("profile", ["modern", "v4.10"])
def test_device_released_on_last_put_not_before(bus: DaxBus, events: list[Event], profile: str) -> None:
    """docs/semantics.md#objects-and-references: file -> cdev -> device -> {region, inode ->
    minor}. After removal an open vma keeps everything; the release (and the minor's return)
    happens at the munmap that drops the last reference, and not one step earlier."""
    r = bus.create_region(8 * M2, M2, profile=profile)
    d = r.devices[0]
    minor = d.minor
    f = bus.open(d, os.O_RDWR)
    v = f.mmap(2 * M2, RW, SH)
    assert v.touch(0, True, 7) == "ok"
    f.close()
    bus.remove_region(r)
    assert not d.released and minor in bus.minor_ida and d.cdev.count == 1
    assert not r.freed and r.kref.count == 1  # the device still pins its region
    assert v.touch(0) == "SIGBUS"
    n = len(events)
    v.munmap()
    assert d.released and minor not in bus.minor_ida and r.freed
    tail = kinds(events[n:])
    assert (
        tail.index("munmap")
        < tail.index("release:")
        < tail.index("release:cdev")
        < tail.index("release:device")
        < tail.index("minor_free")
    )
    assert (events[-1].kind, events[-1].obj) == ("release", r.name)  # the region, last


@pytest.mark.parametrize("profile", ["modern", "v4.10"])
def test_minor_reused_only_after_release(bus: DaxBus, profile: str) -> None:
    """Since 4.10 a minor is not reused while any fd of the old instance exists
    (docs/semantics.md#minors-and-names)."""
    a = bus.create_region(2 * M2, M2, profile=profile)
    old = a.devices[0]
    f = bus.open(old, os.O_RDONLY)
    bus.remove_region(a)
    b = bus.create_region(2 * M2, M2, profile=profile)
    assert b.devices[0].minor != old.minor  # still held by the open file
    f.close()
    assert old.released
    c = bus.create_region(2 * M2, M2, profile=profile)
    assert c.devices[0].minor == old.minor  # lowest free again
    g = bus.open(old, os.O_RDWR)  # the node names a devt: new instance
    assert g.dev is c.devices[0]
    g.close()


def test_minor_exhaustion_fails_creation_cleanly(events: list[Event]) -> None:
    """alloc_dax fails with ENOMEM; modern, like 6.1-7.2's err_alloc_dax, returns the region id and
    the region reference by hand and kfree()s the device (M18 unfixed, Profile.error_path_kfree):
    no put_device, no release callback, and nothing the model counts leaks."""
    with DaxBus(events=events, minor_ida=Ida("one", 1)) as b:
        ok = b.create_region(2 * M2, M2)
        bad = b.create_region(2 * M2, M2)
        d = bad.devices[0]
        assert d.create_error == errno.ENOMEM and d.released and not d.id_held
        assert "step:put_device ok" not in kinds(events, d.name)
        assert "release" not in kinds(events, d.name)
        assert not d.holds_region and bad.kref.count == 1  # only the devm action's reference
        with pytest.raises(OSError) as e:
            b.open(d)
        assert e.value.errno == errno.ENXIO
        assert ok.devices[0].alive


def test_region_refcount_exact(bus: DaxBus) -> None:
    """Region kref = devm action + one per unreleased device (the provider's ref is dropped)."""
    r = bus.create_region(8 * M2, M2, [2 * M2, 2 * M2, 4 * M2])
    assert r.kref.count == 1 + 3
    assert [d.name for d in r.devices] == ["dax0.0", "dax0.1", "dax0.2"]
    assert len({d.minor for d in r.devices}) == 3
    bus.remove_region(r)
    assert r.freed and all(d.released for d in r.devices)


# ----------------------------------------------------------------------------------- teardown ----


def test_unbind_order_in_event_log(bus: DaxBus, events: list[Event]) -> None:
    """kill: clear alive, a real grace period, zap every vma; only then cdev_del
    (docs/semantics.md#teardown)."""
    r = bus.create_region(4 * M2, M2)
    d = r.devices[0]
    f = bus.open(d)
    v = f.mmap(4 * M2, RW, SH)
    assert v.touch(0, True, 1) == "ok"
    n = len(events)
    bus.disable(d)
    seq = [k for k in kinds(events[n:], d.name) if not k.startswith("step")]
    assert seq[:6] == ["alive_clear", "gp_start", "gp_end", "unmap", "cdev_del", "put"]
    steps = [k for k in kinds(events[n:], d.name) if k.startswith("step")]
    assert steps == [
        "step:clear_alive ok",
        "step:synchronize_start ok",
        "step:synchronize_wait ok",
        "step:unmap_mapping_range ok",
        "step:cdev_del ok",
    ]
    assert present_units(v.base, v.base + 4 * M2, M2) == []


def test_remove_order_in_event_log(bus: DaxBus, events: list[Event]) -> None:
    """Provider removal (bus.c, 6.1-7.2): mapping0's devm action first, then unregister_dev_dax:
    kill, device_del (the node, then the unbind's cdev_del), put_device; with nothing else holding
    the device its release follows at once, then the region's devm put."""
    r = bus.create_region(2 * M2, M2)
    n = len(events)
    bus.remove_region(r)
    steps = [e.detail.split()[0] for e in events[n:] if e.kind == "step"]
    assert steps == [
        "unregister_mappings",
        "clear_alive",
        "synchronize_start",
        "synchronize_wait",
        "unmap_mapping_range",
        "device_del",
        "cdev_del",
        "put_device",
        "dax_region_unregister",
    ]
    k = kinds(events[n:])
    assert k.index("step:put_device ok") > k.index("release:device")  # released inside put_device
    assert r.freed


@pytest.mark.parametrize("align", [K4, M2])
def test_sigbus_after_disable_faulted_and_unfaulted(bus: DaxBus, align: int) -> None:
    r = bus.create_region(16 * align, align)
    d = r.devices[0]
    f = bus.open(d)
    v = f.mmap(4 * align, RW, SH)
    assert v.touch(0, True, 5) == "ok"
    installs, sig = bus.core.device_counts(d.slot)
    assert installs == 1 and sig == 0
    bus.disable(d)
    assert v.touch(0) == "SIGBUS"  # was installed: zapped by the kill
    assert v.touch(2 * align, True, 1) == "SIGBUS"  # never faulted: the handler says dead
    assert bus.core.device_counts(d.slot)[1] >= 2
    assert v.fork_touch(align) == "SIGBUS"
    with pytest.raises(OSError) as e:
        f.mmap(align, RW, SH)
    assert e.value.errno == errno.ENXIO


def test_modern_rebind_old_mapping_faults_again(bus: DaxBus) -> None:
    """run_dax on re-bind: old vmas fault through the same dev_dax again, data intact."""
    r = bus.create_region(4 * M2, M2)
    d = r.devices[0]
    f = bus.open(d)
    v = f.mmap(4 * M2, RW, SH)
    assert v.touch(M2 + 3, True, 42) == "ok"
    bus.disable(d)
    assert v.touch(M2 + 3) == "SIGBUS"
    with pytest.raises(OSError) as e:
        bus.disable(d)
    assert e.value.errno == errno.ENODEV
    assert bus.enable(d) is d
    with pytest.raises(OSError) as e:
        bus.enable(d)
    assert e.value.errno == errno.EBUSY
    assert v.check(M2 + 3, 42) == "ok" and v.touch(0, True, 1) == "ok"
    v.munmap()
    f.close()


def test_v410_disable_is_provider_removal_and_enable_a_new_probe(bus: DaxBus) -> None:
    """v4.10 has no bind cycles: the old instance stays dead, a new probe gives a new instance
    over the same memory (docs/semantics.md#modern-versus-2016)."""
    r = bus.create_region(4 * M2, M2, profile="v4.10")
    d = r.devices[0]
    f = bus.open(d)
    v = f.mmap(2 * M2, RW, SH)
    assert v.touch(9, True, 99) == "ok"
    bus.disable(d)
    new = bus.enable(d)
    assert new is not d and new.alive and not d.alive
    assert v.touch(9) == "SIGBUS"
    g = bus.open(new)
    w = g.mmap(2 * M2, RW, SH)
    assert w.check(9, 99) == "ok"
    for x in (v, w):
        x.munmap()
    f.close()
    g.close()


def test_m21_open_through_cached_cdev_of_dead_device_oopses_on_mmap(bus: DaxBus) -> None:
    """Modern finding M21 (spec no_null_deref): an open that reaches the unbound device through the
    cached i_cdev stores private_data = NULL; dax_mmap -> check_vma(NULL) is a kernel oops."""
    r = bus.create_region(2 * M2, M2)
    d = r.devices[0]
    f = bus.open(d)
    bus.disable(d)
    g = bus.open(d)  # cached i_cdev, cdev held by f
    assert g.private_data is None
    with pytest.raises(KernelBug, match="null deref"):
        g.mmap(M2, RW, SH)
    with pytest.raises(OSError) as e:
        f.mmap(M2, RW, SH)  # f has its private_data: check_vma says dead
    assert e.value.errno == errno.ENXIO
    f.close()
    g.close()
    with pytest.raises(OSError) as e:
        bus.open(d)  # no holder left: cdev released, not in kobj_map
    assert e.value.errno == errno.ENXIO


def test_rebind_with_open_file_is_the_spec_finding(bus: DaxBus) -> None:
    """Modern re-bind with a file still open: cdev_init re-initialises a held kobject (WARN); the
    removal's device_del evicts the /dev inode whose link cdev_init left stale and BUGs in cd_forget
    (spec findings refcount_exact_all, no_list_corruption; recorded: f2 step 6), so the device is
    never released."""
    r = bus.create_region(2 * M2, M2)
    d = r.devices[0]
    f = bus.open(d)
    bus.disable(d)
    bus.enable(d)
    f.close()
    bus.remove_region(r)
    assert any(m.startswith("BUG: list_del corruption") for m in bus.dmesg)
    assert any("initialized object" in m for m in bus.dmesg)
    assert not d.released


def test_underflow_when_the_held_file_outlives_the_removal(bus: DaxBus) -> None:
    """The same re-bind with the file closed only after the removal: cdev_del dropped the one count
    cdev_init set, so the file's put underflows (WARN), and its close evicts the inode: the BUG."""
    r = bus.create_region(2 * M2, M2)
    d = r.devices[0]
    f = bus.open(d)
    bus.disable(d)
    bus.enable(d)
    bus.remove_region(r)
    assert not any(m.startswith("BUG") for m in bus.dmesg)  # the file still holds the inode
    f.close()
    assert any(m.startswith("BUG: list_del corruption") for m in bus.dmesg)
    assert any("underflow" in m for m in bus.dmesg)


# --------------------------------------------------------------------------------------- data ----


def test_data_persists_across_unmap_close_reopen(bus: DaxBus) -> None:
    r = bus.create_region(8 * M2, M2, [4 * M2, 4 * M2])
    d0, d1 = r.devices
    f = bus.open(d1)
    v = f.mmap(4 * M2, RW, SH)
    assert v.touch(0, True, 11) == "ok" and v.touch(4 * M2 - 1, True, 12) == "ok"
    v.munmap()
    f.close()
    assert os.pread(r.backing.backing.fd, 1, 4 * M2) == bytes([11])  # device 1 starts at 4M
    g = bus.open(d1, os.O_RDONLY)
    w = g.mmap(4 * M2, PROT["PROT_READ"], SH)
    assert w.check(0, 11) == "ok" and w.check(4 * M2 - 1, 12) == "ok"
    assert w.touch(0, True, 1) == "SIGSEGV"
    h = bus.open(d0)
    x = h.mmap(2 * M2, RW, SH)
    assert x.check(0, 0) == "ok"  # the other device's memory
    for m in (w, x):
        m.munmap()
    g.close()
    h.close()


def test_file_backed_region_persists_across_new_region(events: list[Event]) -> None:
    """A region backed by a file on /dev/shm: the data outlives the bus, a new DaxRegion over the
    same file sees it."""
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="devdax-test-") as tmp:
        path = os.path.join(tmp, "pmem0")
        with DaxBus(events=events) as b:
            r = b.create_region(4 * M2, M2, path=path)
            f = b.open(r.devices[0])
            v = f.mmap(4 * M2, RW, SH)
            assert v.touch(3 * M2 + 5, True, 0xAB) == "ok"
        with DaxBus() as b:
            r = b.create_region(4 * M2, M2, path=path)
            f = b.open(r.devices[0], os.O_RDONLY)
            v = f.mmap(4 * M2, PROT["PROT_READ"], SH)
            assert v.check(3 * M2 + 5, 0xAB) == "ok"
            v.munmap()
            f.close()


def test_multi_range_device_maps_its_ranges_in_pgoff_order(bus: DaxBus) -> None:
    """Modern multi-range devices: pgoff space is the concatenation of ranges (dax_pgoff_to_phys);
    a unit never straddles two ranges."""
    r = bus.create_region(16 * M2, M2, [[(6 * M2, 2 * M2), (2 * M2, 2 * M2)]])
    d = r.devices[0]
    assert d.size == 4 * M2 and d.children == 2
    f = bus.open(d)
    v = f.mmap(4 * M2, RW, SH)
    assert v.touch(0, True, 1) == "ok" and v.touch(2 * M2, True, 2) == "ok"
    fd = r.backing.backing.fd
    assert os.pread(fd, 1, 6 * M2) == b"\x01" and os.pread(fd, 1, 2 * M2) == b"\x02"
    v.munmap()
    f.close()


def test_two_opens_share_one_device(bus: DaxBus) -> None:
    """Every file's f_mapping is the one pseudo-inode mapping: a kill reaches vmas of all files."""
    r = bus.create_region(4 * M2, M2)
    d = r.devices[0]
    f, g = bus.open(d), bus.open(d)
    v, w = f.mmap(2 * M2, RW, SH), g.mmap(2 * M2, RW, SH)
    assert v.touch(0, True, 3) == "ok" and w.check(0, 3) == "ok"
    assert d.cdev.count == 3 and f.f_count.count == 2
    bus.disable(d)
    assert v.touch(0) == "SIGBUS" and w.touch(0) == "SIGBUS"
    for m in (v, w):
        m.munmap()
    f.close()
    g.close()


def test_provider_memory_goes_with_the_last_region_reference(bus: DaxBus) -> None:
    """The region pins the provider's memory (alloc_dax_region takes the resource; dax_region_free
    drops it, docs/semantics.md#objects-and-references): once the provider has let go
    (release_backing: the namespace is destroyed), the memory is freed exactly when the last
    reference on the region goes, which a file of a removed device can hold long after provider
    removal, and well before bus.close."""
    r = bus.create_region(2 * M2, M2, profile="v4.10")
    d = r.devices[0]
    f = bus.open(d)
    v = f.mmap(2 * M2, RW, SH)
    assert v.touch(0, True, 5) == "ok"
    bus.release_backing(r.backing)
    bus.remove_region(r)
    assert not r.freed and not r.backing.backing.closed  # the file pins device -> region -> memory
    v.munmap()
    assert not r.backing.backing.closed  # the fd still holds the cdev
    f.close()
    assert d.released and r.freed and r.backing.backing.closed
    with pytest.raises(OSError) as e:
        bus.enable(d)
    assert e.value.errno == errno.ENODEV  # no provider left to re-probe


def test_region_ids_are_the_lowest_free(bus: DaxBus) -> None:
    """The X of daxX.Y is the region's id (dev_set_name "dax%d.%d", docs/semantics.md#minors-and-names). The
    provider gives it: nd_region->id (4.10 dax_pmem), the namespace's region number (later), so two
    live regions never share one and a provider probed after another's region is gone gets that id
    again; the emulation hands out the lowest id no live region holds (an ida freed in
    dax_region_free). A v4.10 re-probe after a full release is dax0.0 again, as on the kernel."""
    r0 = bus.create_region(2 * M2, M2, profile="v4.10")
    r1 = bus.create_region(2 * M2, M2, profile="v4.10")
    assert (r0.devices[0].name, r1.devices[0].name) == ("dax0.0", "dax1.0")
    bus.release_backing(r0.backing)
    bus.remove_region(r0)
    assert r0.freed
    r2 = bus.create_region(2 * M2, M2, profile="modern")
    assert r2.devices[0].name == "dax0.0"
    bus.disable(r1.devices[0])  # v4.10: provider removal, nothing held
    assert r1.freed
    assert bus.enable(r1.devices[0]).name == "dax1.0"


def test_v410_reprobe_after_full_release_keeps_the_memory(bus: DaxBus) -> None:
    """Nothing held the old instance, so removal released device and region; the provider's memory
    stays and a new probe lays a new region over it (scenario s32 under v4.10)."""
    r = bus.create_region(2 * M2, M2, profile="v4.10")
    d = r.devices[0]
    f = bus.open(d)
    v = f.mmap(2 * M2, RW, SH)
    assert v.touch(1, True, 77) == "ok"
    v.munmap()
    f.close()
    bus.disable(d)
    assert d.released and r.freed
    new = bus.enable(d)
    g = bus.open(new, os.O_RDONLY)
    w = g.mmap(2 * M2, PROT["PROT_READ"], SH)
    assert w.check(1, 77) == "ok"
    w.munmap()
    g.close()
    bus.release_backing(new.region.backing)
    bus.remove_region(new.region)
    assert new.region.backing.backing.closed  # the last hold on the memory went
