"""`devdax scenario run --backend impl`: a scenario executed by the emulation (devdax.impl.bus).

Every step becomes the matching call on real objects: open() on the device node, mmap() placing real
memory, touches that really fault through the handler process (a signal is reported, not taken:
process_vm_readv/writev turn SIGBUS into EFAULT, and fork_touch runs the access in a forked child),
disable/enable run the profile's unbind/bind programs (modern) or provider removal and a new probe
(older profiles). The skip rule is the spec backend's: a step that uses a handle whose creating step
failed is "skipped".

Each scenario gets its own DaxBus (its own handler process), closed afterwards, so scenarios cannot
influence each other except through the process-wide minor ida, as in a kernel.
"""

from __future__ import annotations

import errno

from devdax.impl import sys as dsys
from devdax.impl.bus import DaxBus
from devdax.impl.device import DevDax
from devdax.impl.file import DaxFile, PathFile
from devdax.impl.kobject import KernelBug
from devdax.impl.vma import UserMapping
from devdax.scenario import format as fmt
from devdax.scenario.placement import fixed_base
from devdax.spec import fops
from devdax.spec.abi import FALLOC, IOCTL, MADV, MAP, MS, O_FLAGS, PROT, SEEK, flags_of


class _Run:
    def __init__(self, bus: DaxBus, devs: list[DevDax]) -> None:
        self.bus = bus
        self.devs = devs
        self.fds: dict[str, DaxFile | None] = {}
        self.paths: dict[str, PathFile] = {}  # O_PATH handles (a name is in one of the two)
        self.maps: dict[str, UserMapping] = {}
        self.made: list[DaxFile | UserMapping] = []  # everything created, also under re-bound names


class ImplBackend:
    """`devdax scenario run --backend impl`."""

    name = "impl"

    def __init__(self, workers: int = 2, timeout: float = 10.0, bus: DaxBus | None = None) -> None:
        """``bus``: run on this DaxBus (and leave it open, with everything the scenario made undone)
        instead of a fresh one per scenario; saves the handler start-up in long random runs."""
        self.workers = workers
        self.timeout = timeout
        self.bus = bus

    def run(self, scenario: fmt.Scenario) -> list[str]:
        if self.bus is not None:
            return self._run(self.bus, scenario)
        with DaxBus(workers=self.workers, timeout=self.timeout) as bus:
            return self._run(bus, scenario)

    def _run(self, bus: DaxBus, scenario: fmt.Scenario) -> list[str]:
        bus.mm_topdown = True  # placed as on the kernels the scenarios are compared with
        su = scenario.setup
        # each scenario device is a namespace, and so a region, of its own (spec_backend.probes)
        devs: list[DevDax] = []
        for d in su.devices:
            backing = devs[0].region.backing if devs else None
            region = bus.create_region(
                su.region_size, su.align, [[(d.start, d.size)]], profile=scenario.profile, backing=backing
            )
            devs.extend(region.devices)
        r = _Run(bus, devs)
        try:
            return self._steps(r, scenario)
        finally:
            if self.bus is not None:
                _undo(r)

    @staticmethod
    def _steps(r: _Run, scenario: fmt.Scenario) -> list[str]:
        def step(i: int, st: fmt.Step) -> str:
            bugs = _bugs(r.bus)
            try:
                out = _HANDLERS[type(st)](r, st)
            except OSError as e:
                out = fmt.errno_name(e)
            except KernelBug:  # the emulated kernel detected its own oops (F1's NULL private_data)
                return fmt.OOPS
            # a BUG the step ran into whatever the call (F2's eviction: spec/ctx.py bugged)
            return fmt.OOPS if _bugs(r.bus) > bugs else out

        return fmt.run_steps(scenario, step)


def _bugs(bus: DaxBus) -> int:
    return sum(m.startswith("BUG: list_del") for m in bus.dmesg)


def _undo(r: _Run) -> None:
    """What process exit and provider removal do: unmap every vma, close every fd, remove regions."""
    with r.bus._lock:
        for v in r.made:
            if isinstance(v, UserMapping):
                for a in list(v.areas):
                    v._drop(a)
        for f in r.made:
            if isinstance(f, DaxFile) and not f.closed:
                f.close()
        regions = {id(d.region): d.region for d in r.devs}
        for reg in regions.values():
            if not reg.gone:
                r.bus.remove_region(reg)
            r.bus.release_backing(reg.backing)


def _fd(r: _Run, name: str) -> DaxFile | None:
    f = r.fds.get(name)
    return f if f is not None and not f.closed else None


def _need_fd(r: _Run, name: str) -> DaxFile:
    path = r.paths.get(name)
    if path is not None and not path.closed:
        path.fdget()  # an O_PATH file: EBADF for every call but close
    f = _fd(r, name)
    if f is None:
        raise OSError(errno.EBADF, "closed")
    return f


def _open(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Open)
    refused = fops.path_lookup(r.bus.node_exists(r.devs[st.dev]), st.flags)
    if refused:
        return refused  # the scenario opens by path: devtmpfs first
    if fops.path_only(st.flags):
        p = r.bus.open_path(r.devs[st.dev])
        if st.as_:
            r.paths[st.as_] = p
            r.fds.pop(st.as_, None)
        return fmt.OK
    f = r.bus.open(r.devs[st.dev], flags_of(st.flags, O_FLAGS, "flags"))
    r.made.append(f)
    if st.as_:
        r.fds[st.as_] = f
        r.paths.pop(st.as_, None)
    return fmt.OK


def _close(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Close)
    path = r.paths.get(st.fd)
    if path is not None and not path.closed:
        path.close()
        return fmt.OK
    _need_fd(r, st.fd).close()
    return fmt.OK


def _mmap(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Mmap)
    f = _need_fd(r, st.fd)
    flags = flags_of(st.flags, MAP, "flags")
    fixed = None
    if st.fixed_offset is not None:
        # "an align-aligned base chosen by the runner plus this value", with room to grow after it
        span = st.length + st.fixed_offset + dsys.PAGE_SIZE
        span = (span + dsys.PAGE_SIZE - 1) & ~(dsys.PAGE_SIZE - 1)
        fixed = fixed_base(span, f.dev.align) + st.fixed_offset
    v = f.mmap(st.length, flags_of(st.prot, PROT, "prot"), flags, st.offset, fixed)
    r.made.append(v)
    if st.as_:
        r.maps[st.as_] = v
    return fmt.OK


def _munmap(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Munmap)
    r.maps[st.map].munmap(st.offset, st.length)
    return fmt.OK


def _mprotect(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Mprotect)
    r.maps[st.map].mprotect(st.offset, st.length, flags_of(st.prot, PROT, "prot"))
    return fmt.OK


def _mremap(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Mremap)
    r.maps[st.map].mremap(st.offset, st.old_length, st.new_length, st.move)
    return fmt.OK


def _touch(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Touch)
    return r.maps[st.map].touch(st.offset, st.access == "write", st.value)


def _check(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Check)
    return r.maps[st.map].check(st.offset, st.value)


def _fork_touch(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.ForkTouch)
    write = st.access == "write"
    return r.maps[st.map].fork_touch(st.offset, write, fmt.FORK_STORE if write else None)


def _fd_call(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Read | fmt.Write | fmt.Fsync | fmt.Lseek | fmt.Fallocate | fmt.Ioctl)
    f = _need_fd(r, st.fd)
    if isinstance(st, fmt.Read):
        f.read(st.length)
    elif isinstance(st, fmt.Write):
        f.write(st.length)
    elif isinstance(st, fmt.Fsync):
        f.fsync()
    elif isinstance(st, fmt.Lseek):
        f.lseek(st.offset, SEEK[st.whence])
    elif isinstance(st, fmt.Fallocate):
        mode = flags_of(st.mode, FALLOC, "mode")
        f.fallocate(mode | (FALLOC["FALLOC_FL_KEEP_SIZE"] if mode else 0), st.offset, st.length)
    else:
        f.ioctl(IOCTL[st.request])
    return fmt.OK


def _madvise(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Madvise)
    r.maps[st.map].madvise(st.offset, st.length, MADV[st.advice])
    return fmt.OK


def _msync(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Msync)
    r.maps[st.map].msync(st.offset, st.length, flags_of(st.flags, MS, "flags"))
    return fmt.OK


def _disable(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Disable)
    r.bus.disable(r.devs[st.dev])
    return fmt.OK


def _enable(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Enable)
    dev = r.devs[st.dev]
    r.devs[st.dev] = r.bus.enable(dev)  # older profiles: a new probe of the namespace's region
    return fmt.OK


def _remove(r: _Run, st: fmt.Step) -> str:
    """The device's namespace goes away: its region (with its one device) is removed."""
    assert isinstance(st, fmt.Remove)
    region = r.devs[st.dev].region
    if region.gone:
        return "ENODEV"
    r.bus.remove_region(region)
    return fmt.OK


def _disable_namespace(r: _Run, st: fmt.Step) -> str:
    """The provider lets go (its remove program); the memory stays for a later probe."""
    assert isinstance(st, fmt.DisableNamespace)
    region = r.devs[st.dev].region
    if not region.gone:  # a disabled namespace stays as it is (ndctl succeeds; k46 step 7)
        r.bus.remove_region(region)
    return fmt.OK


def _enable_namespace(r: _Run, st: fmt.Step) -> str:
    """A new probe of the provider over the same backing and layout: new device instances."""
    assert isinstance(st, fmt.EnableNamespace)
    old = r.devs[st.dev].region
    if not old.gone:  # an enabled namespace stays as it is (ndctl succeeds; k46 step 11)
        return fmt.OK
    spans = [list(d.spans) for d in old.devices]
    new = r.bus.create_region(old.backing.size, old.align, spans, profile=old.profile, backing=old.backing)
    r.devs[st.dev] = new.devices[0]
    return fmt.OK


_HANDLERS = {
    fmt.Open: _open,
    fmt.Close: _close,
    fmt.Mmap: _mmap,
    fmt.Munmap: _munmap,
    fmt.Mprotect: _mprotect,
    fmt.Mremap: _mremap,
    fmt.Touch: _touch,
    fmt.Check: _check,
    fmt.ForkTouch: _fork_touch,
    fmt.Read: _fd_call,
    fmt.Write: _fd_call,
    fmt.Fsync: _fd_call,
    fmt.Lseek: _fd_call,
    fmt.Fallocate: _fd_call,
    fmt.Ioctl: _fd_call,
    fmt.Madvise: _madvise,
    fmt.Msync: _msync,
    fmt.Disable: _disable,
    fmt.Enable: _enable,
    fmt.Remove: _remove,
    fmt.DisableNamespace: _disable_namespace,
    fmt.EnableNamespace: _enable_namespace,
}
