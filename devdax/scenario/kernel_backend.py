"""`devdax scenario run --backend kernel`: a scenario executed on a real ``/dev/daxX.Y``.

Each step is the real system call, made through ctypes (devdax.impl.sys and the fault-catching
access in devdax.scenario.touch); its outcome is what the kernel returned: ``ok``, an errno name, or
the signal a touch raised (the si_code is kept as the step's detail). ``disable``/``enable`` unbind
and bind the device_dax driver through sysfs. Setup carves a device of the file's size and alignment
(devdax.scenario.kernel_devices) and the scenario is skipped, with the reason, when it cannot.

This module runs inside a TCG guest (devdax conformance), so it imports only the stdlib, ctypes and the
project's small pure modules.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Callable

from devdax.impl import sys as dsys
from devdax.scenario import format as fmt
from devdax.scenario import kernel_devices as kd
from devdax.scenario import touch as tc
from devdax.scenario.placement import fixed_base
from devdax.spec.abi import FALLOC, IOCTL, MADV, MAP, MREMAP, MS, O_FLAGS, PROT, SEEK, flags_of

_libc = ctypes.CDLL(None, use_errno=True)
_libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
_MAP_FAILED = ctypes.c_void_p(-1).value
#: the step index ``report`` is given when the scenario's handles are closed and its devices destroyed
TEARDOWN = -1


class _Run:
    def __init__(self, devs: list[kd.RealDevice]) -> None:
        self.devs = devs
        self.fds: dict[str, int | None] = {}
        self.maps: dict[str, tuple[int, int]] = {}
        self.opened: list[int] = []
        self.mapped: list[tuple[int, int]] = []
        self.detail: str | None = None

    def fd(self, name: str) -> int:
        fd = self.fds.get(name)
        if fd is None:
            raise OSError(errno.EBADF, "closed")
        return fd


class KernelBackend:
    """Runs scenarios on the running kernel's device-dax. Needs root, ndctl and pmem regions."""

    name = "kernel"

    def __init__(self, report: Callable[[int, str | None, str | None], None] | None = None) -> None:
        """``report(i, None, None)`` is called before step ``i`` runs and ``report(i, outcome, detail)``
        after it: the conformance runner sends both to the host at once, so when a step takes the
        kernel down every earlier outcome is already known, and so is the step that did it."""
        self.report = report
        self.details: list[str | None] = []
        self.skip_reason: str | None = None

    def run(self, scenario: fmt.Scenario) -> list[str]:
        self.details, self.skip_reason = [], None
        carver = kd.Carver()
        try:
            devs = [carver.carve(d.size, scenario.setup.align) for d in scenario.setup.devices]
        except kd.SetupError as e:
            carver.destroy_all()
            self.skip_reason = str(e)
            self.details = [self.skip_reason] * len(scenario.steps)
            return [fmt.SKIPPED] * len(scenario.steps)
        r = _Run(devs)
        try:
            return self._steps(r, scenario)
        finally:
            if self.report is not None:  # teardown can oops too (F2: the cdev list at removal)
                self.report(TEARDOWN, None, None)
            _undo(r)
            carver.destroy_all()

    def _steps(self, r: _Run, scenario: fmt.Scenario) -> list[str]:
        def step(i: int, st: fmt.Step) -> str:
            r.detail = None
            if self.report is not None:
                self.report(i, None, None)
            try:
                return _HANDLERS[type(st)](r, st)
            except OSError as e:
                return fmt.errno_name(e)

        def after(i: int, outcome: str) -> None:
            detail = None if outcome == fmt.SKIPPED else r.detail
            self.details.append(detail)
            if self.report is not None:
                self.report(i, outcome, detail)

        return fmt.run_steps(scenario, step, after)


def _undo(r: _Run) -> None:
    """What process exit does: unmap what the scenario mapped, close what it opened.

    A device the scenario left unbound stays unbound: binding is a scenario step with outcomes of its
    own (F2), and the namespace is destroyed next anyway."""
    for base, length in r.mapped:
        with contextlib.suppress(OSError):
            dsys.munmap(base, length)
    for fd in r.opened:
        with contextlib.suppress(OSError):
            os.close(fd)


def _open(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Open)
    fd = os.open(r.devs[st.dev].node, flags_of(st.flags, O_FLAGS, "flags"))
    r.opened.append(fd)
    if st.as_:
        r.fds[st.as_] = fd
    return fmt.OK


def _close(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Close)
    fd = r.fd(st.fd)
    r.fds[st.fd] = None
    r.opened.remove(fd)
    os.close(fd)
    return fmt.OK


def _mmap(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Mmap)
    fd = r.fd(st.fd)
    flags = flags_of(st.flags, MAP, "flags")
    addr = 0
    if st.fixed_offset is not None:
        align = max(r.devs[0].align, dsys.PAGE_SIZE) if r.devs else dsys.PAGE_SIZE
        addr = fixed_base(st.length + abs(st.fixed_offset) + align, align) + st.fixed_offset
    base = dsys.mmap(addr, st.length, flags_of(st.prot, PROT, "prot"), flags, fd, st.offset)
    r.mapped.append((base, st.length))
    if st.as_:
        r.maps[st.as_] = (base, st.length)
    return fmt.OK


def _munmap(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Munmap)
    base, _ = r.maps[st.map]
    dsys.munmap(base + st.offset, st.length)
    return fmt.OK


def _mprotect(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Mprotect)
    base, _ = r.maps[st.map]
    dsys.mprotect(base + st.offset, st.length, flags_of(st.prot, PROT, "prot"))
    return fmt.OK


def _mremap(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Mremap)
    base, length = r.maps[st.map]
    old = base + st.offset
    flags = MREMAP["MREMAP_MAYMOVE"] if st.move else 0
    new = _libc.mremap(old, st.old_length, st.new_length, flags, None)
    if new in (None, _MAP_FAILED):
        raise OSError(ctypes.get_errno(), "mremap")
    r.mapped.append((new, st.new_length))
    if new == old:
        r.maps[st.map] = (base, max(length, st.offset + st.new_length))
    else:
        r.maps[st.map] = (new - st.offset, st.offset + st.new_length)
    return fmt.OK


def _access(r: _Run, word: int) -> str | None:
    if word & tc.FAULTED:
        outcome, r.detail = tc.describe(word)
        return outcome
    return None


def _touch(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Touch)
    base, _ = r.maps[st.map]
    word = tc.access(base + st.offset, st.access == "write", st.value if st.value is not None else 0xA5)
    return _access(r, word) or fmt.OK


def _check(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Check)
    base, _ = r.maps[st.map]
    word = tc.access(base + st.offset, False)
    fault = _access(r, word)
    if fault:
        return fault
    if word != st.value:
        r.detail = f"read {word}"
        return fmt.MISMATCH
    return fmt.OK


def _fork_touch(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.ForkTouch)
    base, _ = r.maps[st.map]
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one access, its result through the pipe, and no Python clean-up
        try:
            word = tc.access(base + st.offset, st.access == "write", fmt.FORK_STORE)
            os.write(wfd, struct.pack("<Q", word))
        finally:
            os._exit(0)
    os.close(wfd)
    data = os.read(rfd, 8)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if len(data) != 8:
        r.detail = f"child wait status {status}"
        return "SIGKILL" if os.WIFSIGNALED(status) else "EIO"
    return _access(r, struct.unpack("<Q", data)[0]) or fmt.OK


def _fd_call(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Read | fmt.Write | fmt.Fsync | fmt.Lseek | fmt.Fallocate | fmt.Ioctl)
    fd = r.fd(st.fd)
    if isinstance(st, fmt.Read):
        os.read(fd, st.length)
    elif isinstance(st, fmt.Write):
        os.write(fd, b"\0" * st.length)
    elif isinstance(st, fmt.Fsync):
        os.fsync(fd)
    elif isinstance(st, fmt.Lseek):
        os.lseek(fd, st.offset, SEEK[st.whence])
    elif isinstance(st, fmt.Fallocate):
        mode = flags_of(st.mode, FALLOC, "mode")
        dsys.fallocate(fd, mode | (FALLOC["FALLOC_FL_KEEP_SIZE"] if mode else 0), st.offset, st.length)
    else:
        fcntl.ioctl(fd, IOCTL[st.request], b"\0" * 8)
    return fmt.OK


def _madvise(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Madvise)
    base, _ = r.maps[st.map]
    dsys.madvise(base + st.offset, st.length, MADV[st.advice])
    return fmt.OK


def _msync(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Msync)
    base, _ = r.maps[st.map]
    if _libc.msync(base + st.offset, st.length, flags_of(st.flags, MS, "flags")) != 0:
        raise OSError(ctypes.get_errno(), "msync")
    return fmt.OK


def _disable(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Disable)
    kd.unbind(r.devs[st.dev].name)
    return fmt.OK


def _enable(r: _Run, st: fmt.Step) -> str:
    assert isinstance(st, fmt.Enable)
    kd.bind(r.devs[st.dev].name)
    return fmt.OK


def _remove(r: _Run, st: fmt.Step) -> str:
    """ndctl destroy-namespace: unregister_dev_dax with the scenario's handles still open."""
    assert isinstance(st, fmt.Remove)
    dev = r.devs[st.dev]
    kd.destroy_namespace(dev)
    return fmt.OK


def _disable_namespace(r: _Run, st: fmt.Step) -> str:
    """ndctl disable-namespace: the dax_pmem driver unbinds and the device is unregistered."""
    assert isinstance(st, fmt.DisableNamespace)
    kd.namespace_state(r.devs[st.dev], enable=False)
    return fmt.OK


def _enable_namespace(r: _Run, st: fmt.Step) -> str:
    """ndctl enable-namespace: a new device over the same namespace (its name is looked up again)."""
    assert isinstance(st, fmt.EnableNamespace)
    kd.namespace_state(r.devs[st.dev], enable=True)
    return fmt.OK


_HANDLERS: dict[type[fmt.Step], Callable[[_Run, fmt.Step], str]] = {
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
