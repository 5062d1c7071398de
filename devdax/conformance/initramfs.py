"""The guest's initramfs: busybox, the kernel's modules for 9p and pmem, and an init script.

Why so little: the guest needs no root filesystem of its own. Its init loads the modules, mounts the
host's root read-only over 9p and chroots into it, so the guest runs the host's Python, ndctl and the
project itself (a fresh clone, its .venv) without copying anything. Modules are found by name in the
unpacked tree and loaded in dependency order, read from each module's ``depends=`` modinfo, so no
depmod run and no modules.dep are needed; compressed modules are unpacked here because busybox
insmod may not read them.
"""

from __future__ import annotations

import gzip
import lzma
import re
import shutil
from pathlib import Path
from typing import Final

#: what the guest needs, in the order a person would name them; dependencies come first on their own
MODULES: Final = ("virtio_pci", "9pnet_virtio", "9p", "nfit", "nd_pmem", "dax_pmem", "device_dax")
#: the host's root as the guest sees it
HOST: Final = "/host"

INIT: Final = """#!/bin/busybox sh
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in {modules}; do insmod /modules/$m.ko || echo "devdax-init: insmod $m failed"; done
mkdir -p {host}
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 host {host} || echo "devdax-init: no 9p root"
mount -t proc proc {host}/proc; mount -t sysfs sys {host}/sys; mount -t devtmpfs dev {host}/dev
mount -t tmpfs run {host}/run
echo devdax-init: running
chroot {host} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1 TMPDIR=/run \\
    PYTHONPATH={pythonpath} {python} -m devdax.conformance.guest {plan} /dev/ttyS1
echo devdax-init: guest exited $?
poweroff -f
"""


def _modinfo_depends(data: bytes) -> list[str]:
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)", data)
    return [d.decode() for d in m.group(1).split(b",") if d] if m else []


def _read_module(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        return gzip.decompress(raw)
    return raw


def resolve(modules_dir: Path, wanted: tuple[str, ...] = MODULES) -> list[tuple[str, bytes]]:
    """(name, uncompressed .ko) in load order; a wanted module that is built in is simply absent."""
    by_name: dict[str, Path] = {}
    for p in modules_dir.rglob("*.ko*"):
        name = re.sub(r"\.ko(\.\w+)?$", "", p.name).replace("-", "_")
        by_name.setdefault(name, p)
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name not in by_name:
            return
        seen.add(name)
        data = _read_module(by_name[name])
        for dep in _modinfo_depends(data):
            visit(dep)
        order.append((name, data))

    for w in wanted:
        visit(w)
    return order


def _cpio_entry(name: str, mode: int, data: bytes = b"") -> bytes:
    """One ``newc`` cpio record (the format the kernel unpacks an initramfs from)."""
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def build(
    modules_dir: Path, out: Path, *, python: str, pythonpath: str, plan: str, device_dax: Path | None = None
) -> Path:
    """Write the gzip-compressed initramfs to ``out`` and return it. ``device_dax`` is a module built
    out of tree (devdax/conformance/module.py) that replaces the kernel's own device_dax.ko."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise FileNotFoundError("busybox (Debian's busybox-static) is needed for the guest's init")
    mods = resolve(modules_dir)
    if device_dax is not None:
        mods = [(n, _read_module(device_dax) if n == "device_dax" else d) for n, d in mods]
    missing = [m for m in ("9p", "9pnet_virtio", "device_dax", "nfit") if m not in {n for n, _ in mods}]
    if missing:
        raise FileNotFoundError(f"{modules_dir}: no module {', '.join(missing)}")
    init = INIT.format(
        modules=" ".join(n for n, _ in mods), host=HOST, python=python, pythonpath=pythonpath, plan=plan
    )
    entries = [_cpio_entry(d, 0o40755) for d in ("bin", "dev", "proc", "sys", "modules", "host")]
    entries.append(_cpio_entry("bin/busybox", 0o100755, Path(busybox).read_bytes()))
    entries.append(_cpio_entry("init", 0o100755, init.encode()))
    entries += [_cpio_entry(f"modules/{n}.ko", 0o100644, d) for n, d in mods]
    entries.append(_cpio_entry("TRAILER!!!", 0))
    # distinct inode numbers: the kernel hard-links entries that share one
    blob = b"".join(_numbered(e, i + 1) for i, e in enumerate(entries))
    out.write_bytes(gzip.compress(blob, compresslevel=1))
    return out


def _numbered(entry: bytes, ino: int) -> bytes:
    return entry[:6] + b"%08X" % ino + entry[14:]
