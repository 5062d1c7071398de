"""Build a patched device_dax.ko for one Debian kernel, out of tree, from Debian's own packages.

`make patched-module KERNEL=6.1` runs this: the kernel's headers (linux-headers-<abi>-amd64, its
-common companion and linux-kbuild, which carry .config, Module.symvers and the build scripts) and
Debian's linux-source of the same version (for drivers/dax/device.c and the two headers it includes
from its own directory, bus.h and dax-private.h) are fetched through the private apt of
devdax/conformance/kernels.py, which reads the archive from the machine's /etc/apt. The patches are
applied with ``patch -p1`` and Kbuild builds the module against the headers, so it carries the
kernel's vermagic and the symbol CRCs of its Module.symvers, and the kernel's own insmod accepts it.
`devdax conformance --module PATH` then boots the kernel with it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from devdax.conformance.kernels import Apt, FetchError, Kernel, cache_dir, fetch

#: what device.c needs from drivers/dax besides itself
SOURCES = ("drivers/dax/device.c", "drivers/dax/bus.h", "drivers/dax/dax-private.h")
KBUILD = "obj-m := device_dax.o\ndevice_dax-y := device.o\n"


class BuildError(Exception):
    """A patch does not apply or the module does not compile: a failure, unlike a FetchError (the
    archive unreachable), which CI reports as a skip."""


def vermagic(ko: Path) -> str:
    """The module's vermagic string (its .modinfo), e.g. '6.1.0-50-amd64 SMP preempt mod_unload ...'."""
    m = re.search(rb"(?:^|\x00)vermagic=([^\x00]*)", ko.read_bytes())
    if m is None:
        raise ValueError(f"--module: {ko}: no vermagic, not a kernel module")
    return m.group(1).decode(errors="replace")


def _packages(apt: Apt, kernel: Kernel) -> tuple[list[str], str]:
    """The header packages of this kernel's release and the name of its source package."""
    abi = kernel.release.removesuffix("-amd64")
    version = kernel.package.split()[-1]
    upstream = version.split("-")[0]  # 6.1.176
    line = ".".join(upstream.split(".")[:2])  # 6.1
    kbuild = [n for n in (f"linux-kbuild-{line}", f"linux-kbuild-{abi}") if n in apt.names(n)]
    if not kbuild:
        raise FetchError(f"no linux-kbuild package for {kernel.release}")
    return [f"linux-headers-{abi}-amd64", f"linux-headers-{abi}-common", kbuild[0]], f"linux-source-{line}"


def headers_tree(kernel: Kernel, root: Path) -> Path:
    """Unpack (once) the kernel's header packages under ``root`` and return its build directory.

    Debian's arch Makefile includes the -common tree by an absolute /usr/src path; it is pointed at
    the unpacked copy, the only edit."""
    tree = root / f"headers-{kernel.release}"
    build = tree / "usr" / "src" / f"linux-headers-{kernel.release}"
    if not (build / "Module.symvers").is_file():
        apt = Apt(root / "apt")
        apt.update()
        pkgs, _ = _packages(apt, kernel)
        tree.mkdir(parents=True, exist_ok=True)
        for p in pkgs:
            subprocess.run(["dpkg", "-x", str(apt.download(p, root / "debs")), str(tree)], check=True)
    mk = build / "Makefile"
    mk.write_text(re.sub(r"include /usr/src/", f"include {tree}/usr/src/", mk.read_text()))
    return build


def driver_sources(kernel: Kernel, root: Path, into: Path) -> None:
    """drivers/dax/{device.c,bus.h,dax-private.h} of this kernel's Debian linux-source, into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    cached = root / f"dax-src-{kernel.package.split()[-1]}"
    if not all((cached / Path(s).name).is_file() for s in SOURCES):
        apt = Apt(root / "apt")
        apt.update()
        _, source = _packages(apt, kernel)
        deb = apt.download(source, root / "debs")
        unpacked = root / "source-deb"
        shutil.rmtree(unpacked, ignore_errors=True)
        subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
        tarball = next((unpacked / "usr" / "src").glob(f"{source}.tar.*"))
        members = [f"{source}/{s}" for s in SOURCES]
        subprocess.run(["tar", "-xf", str(tarball), "-C", str(unpacked), *members], check=True)
        cached.mkdir(parents=True, exist_ok=True)
        for s in SOURCES:
            shutil.copy(unpacked / source / s, cached / Path(s).name)
        shutil.rmtree(unpacked)
    for s in SOURCES:
        shutil.copy(cached / Path(s).name, into / Path(s).name)


def build(line: str, patches: Sequence[Path], out: Path, root: Path | None = None) -> Path:
    """device_dax.ko of kernel line ``line`` with ``patches`` applied, copied to ``out``."""
    root = root or cache_dir() / "module"
    kernel = fetch(line)
    src = root / f"build-{kernel.release}"
    shutil.rmtree(src, ignore_errors=True)
    dax = src / "drivers" / "dax"
    driver_sources(kernel, root, dax)
    for p in patches:
        r = subprocess.run(
            ["patch", "-p1", "--forward", "-i", str(p.resolve())], cwd=src, capture_output=True, text=True
        )
        if r.returncode != 0:
            raise BuildError(f"{p.name} does not apply to {kernel.package}: {r.stdout.strip()[-300:]}")
    (dax / "Kbuild").write_text(KBUILD)
    headers = headers_tree(kernel, root)
    # no BTF for the module: it needs pahole and the kernel's vmlinux, and a test module needs neither
    make = ["make", "-C", str(headers), f"M={dax}", "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"]
    r = subprocess.run(make, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"building device_dax.ko failed: {(r.stderr or r.stdout).strip()[-600:]}")
    warnings = [line for line in r.stderr.splitlines() if "warning:" in line]
    for w in warnings:
        print(f"patched-module: {w}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(dax / "device_dax.ko", out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devdax.conformance.module", description=__doc__)
    ap.add_argument("--kernel", default="6.1", help="kernel line (devdax/conformance/kernels.py KERNELS)")
    ap.add_argument("--out", type=Path, required=True, help="where to write device_dax.ko")
    ap.add_argument("patches", nargs="*", type=Path, help="patches against the kernel tree (-p1)")
    a = ap.parse_args(argv)
    try:
        ko = build(a.kernel, a.patches, a.out)
    except (FetchError, StopIteration) as e:
        print(f"patched-module: could not fetch the kernel's packages: {e}", file=sys.stderr)
        return 3
    except (BuildError, OSError, subprocess.SubprocessError, ValueError) as e:
        print(f"patched-module: error: {e}", file=sys.stderr)
        return 1
    print(f"{ko}: vermagic {vermagic(ko)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
