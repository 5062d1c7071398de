"""`devdax conformance --module`: the patched device_dax.ko replaces the kernel's own in the guest,
and a module built for another kernel, or one without the profile that predicts it, is a usage error."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from devdax.conformance import initramfs, module
from devdax.conformance.cli import main as conformance

KO = b"\x7fELF...\x00depends=\x00vermagic=6.1.0-50-amd64 SMP preempt mod_unload \x00name=device_dax\x00"
FIXES = str(Path(__file__).resolve().parents[2] / "docs" / "findings" / "fix-all-6.1.toml")


def test_vermagic_is_read_from_modinfo(tmp_path: Path) -> None:
    (tmp_path / "d.ko").write_bytes(KO)
    assert module.vermagic(tmp_path / "d.ko").split()[0] == "6.1.0-50-amd64"
    (tmp_path / "x.ko").write_bytes(b"no module")
    with pytest.raises(ValueError, match="vermagic"):
        module.vermagic(tmp_path / "x.ko")


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
def test_the_initramfs_carries_the_given_device_dax(tmp_path: Path) -> None:
    mods = tmp_path / "modules"
    for name in ("9p", "9pnet_virtio", "nfit", "device_dax"):
        (mods / f"{name}.ko").parent.mkdir(parents=True, exist_ok=True)
        (mods / f"{name}.ko").write_bytes(b"\x7fELF...\x00depends=\x00name=" + name.encode() + b"\x00")
    (tmp_path / "patched.ko").write_bytes(KO)
    out = initramfs.build(
        mods, tmp_path / "i.gz", python="p", pythonpath="q", plan="r", device_dax=tmp_path / "patched.ko"
    )
    blob = gzip.decompress(out.read_bytes())
    assert KO in blob and b"name=device_dax\x00" not in blob.replace(KO, b"")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--profile", FIXES], "--profile: only with --module"),
        (["--module", "{ko}"], "a --profile file are needed"),
        (["--kernel", "6.12", "--module", "{ko}", "--profile", FIXES], "not a 6.12 kernel"),
        (["--recorded", "--module", "{ko}", "--profile", FIXES], "not with --recorded"),
        (["--exec", "true", "--module", "{ko}"], "not with --exec"),
    ],
)
def test_module_usage_errors_exit_2(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d.ko").write_bytes(KO)
    assert conformance([a.format(ko=tmp_path / "d.ko") for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
