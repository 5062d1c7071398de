"""Real device-dax instances for a scenario: carve a namespace per scenario device with ndctl.

Why a fresh namespace per scenario: a scenario's outcomes depend on the device's size, alignment and
driver state, and a scenario may leave a device unbound or broken (F2); carving anew and destroying
afterwards gives every scenario the setup its file states and nothing left over from the previous one.

The size the file asks for is the size of ``/dev/daxX.Y``. A devdax namespace keeps an info block and
padding in front of the data (``nd_pfn_init``: the data offset is rounded up to the device alignment
and at least the memory-hotplug subsection), so the namespace is sized by measurement: create with a
guess, read the device's size back, and re-create once with the difference. When the region cannot
give the exact size the scenario is skipped with that reason; a device of a different size is never
used in its place.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

DAX_BUS: Final = Path("/sys/bus/dax")
DRIVER: Final = DAX_BUS / "drivers" / "device_dax"
K: Final = 1024
M: Final = 1024 * K
G: Final = 1024 * M


class SetupError(Exception):
    """The machine cannot give the scenario the devices it asks for: the scenario is skipped."""


@dataclass
class RealDevice:
    """One carved device: the namespace that holds it and its dax device (``dax1.0``)."""

    namespace: str
    name: str
    size: int
    align: int
    removed: bool = False

    @property
    def node(self) -> str:
        return f"/dev/{self.name}"


def _ndctl(*args: str) -> object:
    try:
        r = subprocess.run(["ndctl", *args], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SetupError(f"ndctl {args[0]}: {e}") from None
    if r.returncode != 0:
        raise SetupError(f"ndctl {' '.join(args)}: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    out = r.stdout.strip()
    return json.loads(out) if out.startswith(("{", "[")) else None


def _listed(obj: object) -> list[dict[str, object]]:
    if isinstance(obj, dict):
        return [obj]
    return [o for o in obj if isinstance(o, dict)] if isinstance(obj, list) else []


def _dax_size(name: str) -> int:
    return int((DAX_BUS / "devices" / name / "size").read_text())


def _overhead(align: int) -> int:
    """The first guess at the namespace bytes in front of the data (measured on 6.1-7.2)."""
    return G if align >= G else 2 * M


class Carver:
    """Creates and destroys devdax namespaces in the machine's pmem regions."""

    def __init__(self) -> None:
        self.made: list[RealDevice] = []

    def _regions_for(self, need: int, align: int) -> list[str]:
        """Regions with room, in the order to try: 1G devices want the region placed on a 1G boundary
        (the largest), others the smallest that fits. A region that already holds a namespace can
        refuse a second one (its free extent misaligned), so the caller tries the next."""
        regions = _listed(_ndctl("list", "-R"))
        fits = [r for r in regions if int(str(r.get("max_available_extent", 0))) >= need]
        if not fits:
            raise SetupError(f"no pmem region has {need} bytes free for a {align}-aligned device")
        fits.sort(key=lambda r: int(str(r.get("size", 0))), reverse=align >= G)
        return [str(r["dev"]) for r in fits]

    def _create(self, region: str, ns_size: int, align: int) -> RealDevice:
        out = _ndctl(
            "create-namespace",
            "-r",
            region,
            "-m",
            "devdax",
            "-M",
            "mem",
            "-a",
            str(align),
            "-s",
            str(ns_size),
        )
        ns = _listed(out)[0] if _listed(out) else {}
        devs = _listed(dict(ns.get("daxregion", {}) or {}).get("devices"))  # type: ignore[call-overload]
        if not devs:
            raise SetupError(f"ndctl create-namespace on {region} made no dax device: {out}")
        name = str(devs[0]["chardev"])
        return RealDevice(str(ns["dev"]), name, _dax_size(name), align)

    def carve(self, size: int, align: int) -> RealDevice:
        """A bound ``/dev/daxX.Y`` of exactly ``size`` bytes and alignment ``align``."""
        guess = size + _overhead(align)
        errors: list[str] = []
        for region in self._regions_for(guess, align):
            try:
                dev = self._create(region, guess, align)
                if dev.size != size:
                    self.destroy(dev)
                    dev = self._create(region, guess + size - dev.size, align)
                    if dev.size != size:
                        self.destroy(dev)
                        raise SetupError(f"{region} gives a {dev.size}-byte device for {size} asked")
            except SetupError as e:
                errors.append(str(e))
                continue
            self.made.append(dev)
            return dev
        raise SetupError("; ".join(errors))

    def destroy(self, dev: RealDevice) -> None:
        """Destroy the namespace (a bound device is unbound and unregistered on the way)."""
        if not dev.removed:
            _ndctl("destroy-namespace", "-f", dev.namespace)
        if dev in self.made:
            self.made.remove(dev)

    def destroy_all(self) -> None:
        for dev in list(self.made):
            self.destroy(dev)


def destroy_namespace(dev: RealDevice) -> None:
    """The `remove` step: raises OSError(ENODEV) when the namespace is already gone."""
    try:
        _ndctl("destroy-namespace", "-f", dev.namespace)
    except SetupError as e:
        raise OSError(errno.ENODEV, str(e)) from None
    dev.removed = True


def namespace_state(dev: RealDevice, enable: bool) -> None:
    """ndctl enable-/disable-namespace; after an enable the device's name is read back, since the
    provider's new probe creates a new device. OSError(errno) when ndctl refuses."""
    verb = "enable-namespace" if enable else "disable-namespace"
    try:
        _ndctl(verb, dev.namespace)
        if enable:
            ns = _listed(_ndctl("list", "-n", dev.namespace))
            devs = _listed(dict(ns[0].get("daxregion", {}) or {}).get("devices")) if ns else []  # type: ignore[call-overload]
            if devs:
                dev.name = str(devs[0]["chardev"])
    except SetupError as e:
        raise OSError(errno.EBUSY if enable else errno.ENODEV, str(e)) from None


def unbind(name: str) -> None:
    """`disable`: the device_dax driver lets go of the device (dev_dax_kill, cdev_del)."""
    _sysfs_write(DRIVER / "unbind", name)


def bind(name: str) -> None:
    """`enable`: the device_dax driver probes the device again (dev_dax_probe)."""
    _sysfs_write(DRIVER / "bind", name)


def _sysfs_write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
