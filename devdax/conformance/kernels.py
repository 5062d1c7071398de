"""Fetch and unpack the Debian kernels devdax is measured against (6.1, 6.12, 7.2), never installing them.

The packages come from the Debian archive the machine's own apt already uses: its configured URIs are
read from /etc/apt (no host name is written anywhere) and put in a private sources list with the
suites the kernels live in, so ``apt-get`` can look them up with its own lists and archive directory
and the machine's apt state is left untouched. The packages are unpacked with ``dpkg -x``.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final


class FetchError(Exception):
    """A kernel could not be fetched or unpacked: printed as a skip, never a pass."""


@dataclass(frozen=True)
class KernelSpec:
    """Where one kernel line lives: its suite and the package names that carry the image and modules."""

    name: str
    suite: str
    main: str  # regex for the package holding vmlinuz; the highest match is taken
    extra: tuple[str, ...] = ()  # templates for same-version companions ({v}: the version in main)


KERNELS: Final = {
    "6.1": KernelSpec("6.1", "bookworm", r"linux-image-6\.1\.0-(\d+)-amd64"),
    "6.12": KernelSpec("6.12", "bookworm-backports", r"linux-image-6\.12\.(\d+)\+deb12-amd64-unsigned"),
    "7.2": KernelSpec(
        "7.2",
        "sid",
        r"linux-binary-7\.2\.(\d+)\+deb14-amd64",
        ("linux-modules-7.2.{v}+deb14-amd64", "linux-base-7.2.{v}+deb14-amd64"),
    ),
}
SUITES: Final = ("bookworm", "bookworm-backports", "sid")


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel: what to boot and where its modules are."""

    name: str
    release: str  # uname -r, e.g. 6.1.0-50-amd64
    package: str  # the Debian package and version, e.g. linux-image-6.1.0-50-amd64 6.1.176-1
    vmlinuz: Path
    modules: Path
    #: a device_dax.ko the guest loads instead of the kernel's own (`devdax conformance --module`)
    module: Path | None = None


def cache_dir() -> Path:
    """$DEVDAX_CACHE, else ~/.cache/devdax: kernels, apt lists and NVDIMM files live here."""
    env = os.environ.get("DEVDAX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "devdax"


def archive_uris(etc: Path = Path("/etc/apt")) -> list[tuple[str, str]]:
    """(URI, signed-by) of every Debian archive entry in the machine's apt configuration."""
    found: list[tuple[str, str]] = []
    files = [
        etc / "sources.list",
        *sorted((etc / "sources.list.d").glob("*.list")),
        *sorted((etc / "sources.list.d").glob("*.sources")),
    ]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                suites = fields.get("Suites", "").split()
                if any(s in ("bookworm", "trixie", "sid", "forky") for s in suites):
                    for uri in fields.get("URIs", "").split():
                        found.append((uri, fields.get("Signed-By", "")))
        else:
            for m in re.finditer(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(bookworm|trixie|sid)\s", text, re.M):
                opts = m.group(1) or ""
                sb = re.search(r"signed-by=(\S+?)[\s\]]", opts)
                found.append((m.group(2), sb.group(1) if sb else ""))
    return [(u, s) for u, s in dict.fromkeys(found) if not u.rstrip("/").endswith("-security")]


class Apt:
    """apt-get and apt-cache on a private sources list, lists and archive directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        uris = archive_uris()
        if not uris:
            raise FetchError("no Debian archive in /etc/apt to fetch kernels from")
        lines = []
        for uri, signed in uris:
            opt = f"[signed-by={signed}] " if signed else ""
            lines += [f"deb {opt}{uri} {suite} main" for suite in SUITES]
        for d in ("lists/partial", "archives/partial"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "sources.list").write_text("\n".join(lines) + "\n")
        self.opts = [
            "-o",
            f"Dir::Etc::sourcelist={root / 'sources.list'}",
            "-o",
            "Dir::Etc::sourceparts=-",
            "-o",
            f"Dir::State::Lists={root / 'lists'}",
            "-o",
            f"Dir::Cache::archives={root / 'archives'}",
            "-o",
            "APT::Sandbox::User=root",
            "-o",
            "APT::Get::List-Cleanup=0",
        ]
        self.updated = False

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        r = subprocess.run([tool, *self.opts, *args], capture_output=True, text=True, cwd=cwd, timeout=900)
        if r.returncode != 0:
            raise FetchError(f"{tool} {' '.join(args)}: {r.stderr.strip()[-300:]}")
        return r.stdout

    def update(self) -> None:
        if not self.updated:
            self._run("apt-get", "update", "-q")
            self.updated = True

    def names(self, pattern: str) -> list[str]:
        return self._run("apt-cache", "pkgnames", pattern.split("\\")[0].split("(")[0]).split()

    def download(self, package: str, into: Path) -> Path:
        into.mkdir(parents=True, exist_ok=True)
        self._run("apt-get", "download", "-q", package, cwd=into)
        debs = sorted(into.glob(f"{package}_*.deb"))
        if not debs:
            raise FetchError(f"apt-get download {package} left no .deb")
        return debs[-1]


def _newest(names: list[str], pattern: str) -> tuple[str, str]:
    best: tuple[int, str, str] | None = None
    for n in names:
        m = re.fullmatch(pattern, n)
        if m and (best is None or int(m.group(1)) > best[0]):
            best = (int(m.group(1)), n, m.group(1))
    if best is None:
        raise FetchError(f"no package matches {pattern} in the configured archive")
    return best[1], best[2]


def _deb_version(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def fetch(name: str, root: Path | None = None) -> Kernel:
    """Download (once) and unpack (once) the newest kernel of the line ``name``. Anything that goes
    wrong on the way (the archive unreachable, a full disk, a tool missing) is a FetchError, which
    the command prints as a skip of that kernel."""
    if name not in KERNELS:
        raise ValueError(f"--kernel: expected one of {', '.join(KERNELS)} or all, got {name!r}")
    try:
        return _fetch(KERNELS[name], root or cache_dir())
    except (OSError, subprocess.SubprocessError) as e:
        raise FetchError(f"{name}: {e}") from None


def _fetch(spec: KernelSpec, root: Path) -> Kernel:
    name = spec.name
    root = root or cache_dir()
    apt = Apt(root / "apt")
    marker = root / "kernels" / f"{name}.current"
    tree: Path | None = None
    if marker.is_file():  # already unpacked: no network needed
        pkg, version, tree_s = marker.read_text().split("\n")[:3]
        tree = Path(tree_s)
    if tree is None or not tree.is_dir():
        apt.update()
        main, v = _newest(apt.names(spec.main), spec.main)
        pkgs = [main, *(t.format(v=v) for t in spec.extra)]
        tree = root / "kernels" / main
        debs = [apt.download(p, root / "debs") for p in pkgs]
        tree.mkdir(parents=True, exist_ok=True)
        for deb in debs:
            subprocess.run(["dpkg", "-x", str(deb), str(tree)], check=True, capture_output=True)
        pkg, version = main, _deb_version(debs[0])
        marker.write_text(f"{pkg}\n{version}\n{tree}\n")
    return _describe(name, tree, f"{pkg} {version}")


def _describe(name: str, tree: Path, package: str) -> Kernel:
    for mods in (tree / "lib" / "modules", tree / "usr" / "lib" / "modules"):
        if mods.is_dir():
            for rel in sorted(mods.iterdir()):
                for vm in (tree / "boot" / f"vmlinuz-{rel.name}", rel / "vmlinuz"):
                    if vm.is_file():
                        return Kernel(name, rel.name, package, vm, rel)
    raise FetchError(f"{tree}: no vmlinuz and modules directory after unpacking")
