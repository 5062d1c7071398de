"""The conformance machinery without QEMU: apt sources, the initramfs, oops parsing, recordings, the
fault-catching access, and the command's usage errors."""

from __future__ import annotations

import ctypes
import gzip
import json
import lzma
import mmap
import os
from pathlib import Path
from typing import ClassVar

import pytest

from devdax.conformance import boot, initramfs, kernels, record
from devdax.conformance.cli import main as conformance
from devdax.scenario import touch


def test_archive_uris_read_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /k.gpg\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
    )
    (tmp_path / "sources.list").write_text("deb [signed-by=/o.gpg] http://other.invalid/debian sid main\n")
    assert kernels.archive_uris(tmp_path) == [
        ("http://other.invalid/debian", "/o.gpg"),
        ("http://mirror.invalid/debian", "/k.gpg"),
    ]


def test_unknown_kernel_line_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="--kernel"):
        kernels.fetch("5.4")


def _module(path: Path, depends: str, compress: bool) -> None:
    body = b"\x7fELF...\x00license=GPL\x00depends=" + depends.encode() + b"\x00name=x\x00"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(body) if compress else body)


def test_modules_load_in_dependency_order_and_unpack(tmp_path: Path) -> None:
    _module(tmp_path / "kernel/fs/9p/9p.ko.xz", "9pnet,netfs", True)
    _module(tmp_path / "kernel/net/9p/9pnet.ko.xz", "", True)
    _module(tmp_path / "kernel/fs/netfs/netfs.ko", "", False)
    _module(tmp_path / "kernel/drivers/dax/device_dax.ko.xz", "", True)
    order = initramfs.resolve(tmp_path, ("9p", "device_dax", "virtio_pci"))
    names = [n for n, _ in order]
    assert names == ["9pnet", "netfs", "9p", "device_dax"]  # virtio_pci: built in, absent
    assert all(data.startswith(b"\x7fELF") for _, data in order)


def test_cpio_entries_are_newc_and_padded() -> None:
    e = initramfs._cpio_entry("init", 0o100755, b"abc")
    assert e.startswith(b"070701") and len(e) % 4 == 0
    assert int(e[6 + 8 * 6 : 6 + 8 * 7], 16) == 3  # c_filesize
    assert gzip.decompress(gzip.compress(e)) == e


CONSOLE = """[   11.2] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   11.2] #PF: supervisor read access in kernel mode
[   11.2] RIP: 0010:check_vma+0x11/0x90 [device_dax]
[   11.2] Kernel panic - not syncing: Fatal exception
"""


def test_oops_names_its_first_line_and_rip_function() -> None:
    assert boot.oops_of(CONSOLE) == (
        "BUG: kernel NULL pointer dereference, address: 0000000000000008; RIP check_vma"
    )
    assert boot.oops_of("[ 1.0] all is well\n") is None


def test_accelerator_is_tcg_without_vmx_or_svm() -> None:
    flags = Path("/proc/cpuinfo").read_text()
    if " vmx" not in flags and " svm" not in flags:
        assert boot.accelerator() == "tcg"


def test_compare_and_known_list(tmp_path: Path) -> None:
    rec = [
        record.Recorded("6.1", "a.json", "x", 0, "open", "ok", None),
        record.Recorded("6.1", "a.json", "x", 1, "mmap", "EINVAL", None),
        record.Recorded("6.1", "a.json", "x", -1, "teardown", "OOPS", "list_del"),
    ]
    found = record.compare(rec, {("spec", "a.json"): ["ok", "ok"], ("impl", "a.json"): ["ok", "EINVAL"]})
    assert [(d.backend, d.step, d.kernel, d.predicted) for d in found] == [("spec", 1, "EINVAL", "ok")]
    path = tmp_path / "known.json"
    record.write_known(found, path)
    entry = json.loads(path.read_text())[0]
    assert entry["status"] == "open" and entry["predicted"] == "ok"
    entry["note"] = "kept"
    path.write_text(json.dumps([entry]))
    record.write_known(found, path)  # rewriting keeps the note
    assert json.loads(path.read_text())[0]["note"] == "kept"


def test_recordings_round_trip(tmp_path: Path) -> None:
    rows = [record.Recorded("7.2", "b.json", "y", 0, "touch", "SIGBUS", "BUS_ADRERR")]
    record.write("7.2.13", {"kernel": "7.2"}, rows, tmp_path)
    assert record.load(tmp_path) == rows
    assert record.releases(tmp_path) == {"7.2": {"kernel": "7.2"}}


def test_touch_survives_sigsegv_and_sigbus_in_process(tmp_path: Path) -> None:
    buf = mmap.mmap(-1, 4096)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert touch.access(addr, True, 0x41) == 0x41 and buf[0] == 0x41
    assert touch.access(addr, False) == 0x41
    assert touch.describe(touch.access(8, False)) == ("SIGSEGV", "SEGV_MAPERR")
    f = tmp_path / "f"
    f.write_bytes(b"z" * 8192)
    fd = os.open(f, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 8192)
        a = ctypes.addressof(ctypes.c_char.from_buffer(m))
        os.ftruncate(fd, 0)  # the pages behind the mapping are gone: SIGBUS
        assert touch.describe(touch.access(a, False)) == ("SIGBUS", "BUS_ADRERR")
    finally:
        os.close(fd)


@pytest.mark.parametrize("argv", [["--kernel", "5.4"], ["no-such-file.json"], ["--bogus"]])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(conformance(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("devdax conformance: error:")


def test_kernel_backend_skips_a_scenario_it_cannot_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pmem region (or no ndctl): every step is skipped with the reason, nothing is guessed."""
    from devdax.scenario import format as fmt
    from devdax.scenario import kernel_devices
    from devdax.scenario.kernel_backend import KernelBackend

    monkeypatch.setattr(kernel_devices, "_ndctl", lambda *a: [])
    sc = fmt.load(Path(__file__).parents[1] / "scenarios" / "s01_private_rdonly_einval.json")
    b = KernelBackend()
    assert b.run(sc) == [fmt.SKIPPED] * len(sc.steps)
    assert b.skip_reason is not None and "no pmem region" in b.skip_reason


def test_recording_a_subset_replaces_only_those_files(tmp_path: Path) -> None:
    a0 = record.Recorded("6.1", "a.json", "1", 0, "open", "ok", None)
    b0 = record.Recorded("6.1", "b.json", "1", 0, "open", "ok", None)
    record.write("6.1.0", {"kernel": "6.1"}, [a0, b0], tmp_path)
    b0new = record.Recorded("6.1", "b.json", "2", 0, "open", "ENXIO", None)
    record.write("6.1.0", {"kernel": "6.1"}, [b0new], tmp_path)
    assert record.load(tmp_path) == [a0, b0new]


def test_a_scenario_not_set_up_is_not_compared() -> None:
    r = record.Recorded("6.1", "a.json", "1", 0, "open", "skipped", record.SETUP + "no pmem region")
    assert record.not_run(r)
    assert record.compare([r], {("spec", "a.json"): ["ok"]}) == []


class _FakeMachine:
    """Replays scripted boots: each is (events, console, exit status)."""

    script: ClassVar[list[tuple[list[dict[str, object]], str, int]]] = []
    plans: ClassVar[list[int]] = []

    def __init__(self, *args: object) -> None:
        pass

    def boot(self, plan: Path, timeout: float, on_event: object) -> tuple[str, int]:
        _FakeMachine.plans.append(int(json.loads(plan.read_text())["start"]))
        events, console, rc = _FakeMachine.script.pop(0)
        for ev in events:
            on_event(ev)  # type: ignore[operator]
        return console, rc


def _steps(k: int, outcomes: list[str]) -> list[dict[str, object]]:
    evs: list[dict[str, object]] = [{"event": "scenario", "index": k}]
    for i, o in enumerate(outcomes):
        evs += [
            {"event": "begin", "index": k, "step": i},
            {"event": "step", "index": k, "step": i, "op": "open", "outcome": o},
        ]
    return evs + [{"event": "teardown", "index": k, "step": -1}, {"event": "done", "index": k, "seconds": 1}]


def test_boots_attribute_oopses_retry_early_deaths_and_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scen = Path(__file__).parents[1] / "scenarios"
    f1 = str(scen / "f1_open_after_unbind_null_private.json")  # 5 steps, oopses at step 3
    s01 = str(scen / "s01_private_rdonly_einval.json")
    ready: dict[str, object] = {"event": "ready", "linux": "6.1"}
    oops_f1 = [ready, *_steps(0, ["ok", "ok", "ok"])[:-2], {"event": "begin", "index": 0, "step": 3}]
    _FakeMachine.script = [
        ([], "early death", 0),  # retried, not recorded
        (oops_f1, CONSOLE, 0),  # f1 oopses in step 3
        ([ready, *_steps(1, ["ok"] * 5), {"event": "end"}], "", 0),  # the next boot starts at s01
    ]
    _FakeMachine.plans = []
    monkeypatch.setattr(boot, "Machine", _FakeMachine)
    kernel = kernels.Kernel("6.1", "6.1.0", "pkg 1", tmp_path, tmp_path)
    said: list[str] = []
    runs, boots = boot.run(kernel, [f1, s01], tmp_path / "work", said.append)
    assert boots == 3 and _FakeMachine.plans == [0, 0, 1]
    f1_out = [runs[0].steps[i].outcome for i in range(5)]
    assert f1_out == ["ok", "ok", "ok", "OOPS", "skipped"]
    assert "check_vma" in str(runs[0].steps[3].detail)
    assert [runs[1].steps[i].outcome for i in range(5)] == ["ok"] * 5
    assert any("retrying" in line for line in said)


def test_an_oops_in_teardown_is_its_own_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s01 = str(Path(__file__).parents[1] / "scenarios" / "s01_private_rdonly_einval.json")
    ready: dict[str, object] = {"event": "ready", "linux": "6.1"}
    _FakeMachine.script = [([ready, *_steps(0, ["ok"] * 5)[:-1]], CONSOLE, 0)]
    monkeypatch.setattr(boot, "Machine", _FakeMachine)
    kernel = kernels.Kernel("6.1", "6.1.0", "pkg 1", tmp_path, tmp_path)
    runs, _ = boot.run(kernel, [s01], tmp_path / "work", lambda _: None)
    assert runs[0].steps[boot.TEARDOWN].outcome == "OOPS"
    assert [runs[0].steps[i].outcome for i in range(5)] == ["ok"] * 5


def test_a_guest_that_never_gets_ready_is_a_boot_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _FakeMachine.script = [([], "", 0)] * boot.BOOT_RETRIES
    monkeypatch.setattr(boot, "Machine", _FakeMachine)
    kernel = kernels.Kernel("6.1", "6.1.0", "pkg 1", tmp_path, tmp_path)
    with pytest.raises(boot.BootError, match="before the guest was ready"):
        boot.run(
            kernel,
            [str(Path(__file__).parents[1] / "scenarios" / "s01_private_rdonly_einval.json")],
            tmp_path / "work",
            lambda _: None,
        )


def test_a_fetch_that_cannot_write_its_cache_is_a_fetch_error() -> None:
    """A full disk or an unwritable cache is a skip of that kernel, never a traceback."""
    with pytest.raises(kernels.FetchError, match=r"6\.1"):
        kernels.fetch("6.1", Path("/proc/devdax-no-such-dir"))
