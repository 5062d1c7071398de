"""Boot a Debian kernel under QEMU with emulated NVDIMMs and run scenarios in it until all have run.

One boot runs scenarios from a start index on. The guest reports each step on its second serial port
before the next begins (devdax.conformance.guest); the first serial port is the kernel console. Boots
use ``oops=panic``: a step that oopses stops the guest at once, so nothing runs on a corrupted kernel.
That step's outcome is ``OOPS`` (detail: the function in the oops's RIP line), the scenario's later
steps are ``skipped``, and a new boot continues with the next scenario. A boot that dies before the
guest said ``ready`` (under TCG a boot occasionally dies early in unrelated code) is retried, never
reported as a result.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from devdax.conformance import initramfs
from devdax.conformance.kernels import Kernel

OOPS: Final = "OOPS"
#: the pseudo-step of a scenario's teardown (closing its handles, destroying its devices)
TEARDOWN: Final = -1
#: NVDIMMs: two for 4K and 2M devices, one 1G-aligned and large enough for a 2G device of 1G align
NVDIMMS: Final = (("pmem-a", 1 << 30, 2 << 20), ("pmem-b", 1 << 30, 2 << 20), ("pmem-c", 4 << 30, 1 << 30))
LABEL_SIZE: Final = "128K"
BOOT_RETRIES: Final = 3
#: a boot with no word from the guest for this long is stopped (TCG: a scenario takes seconds)
SILENCE: Final = 240.0

_OOPS_LINE = re.compile(
    r"(Oops:|BUG:|kernel BUG at|general protection fault|list_del corruption|"
    r"Kernel panic - not syncing)"
)
_RIP = re.compile(r"RIP: 0010:([A-Za-z0-9_.]+)\+0x")


class BootError(Exception):
    """No kernel could be booted far enough to run anything (exit status 3)."""


def accelerator() -> str:
    """'kvm' only where it can work (vmx/svm in the CPU flags and /dev/kvm usable); else 'tcg'."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK) and re.search(r"\b(vmx|svm)\b", flags) is not None
    return "kvm" if usable else "tcg"


@dataclass
class StepResult:
    """One step's outcome on one kernel, as the guest reported it (or as the host saw the oops)."""

    index: int
    step: int
    op: str
    outcome: str
    detail: str | None = None


@dataclass
class ScenarioRun:
    file: str
    steps: dict[int, StepResult] = field(default_factory=dict)
    skip: str | None = None
    seconds: float | None = None
    boot: int = 0


def oops_of(console: str) -> str | None:
    """The oops or BUG in a console log, as 'first line; RIP function', or None."""
    m = _OOPS_LINE.search(console)
    if m is None:
        return None
    line = console[m.start() :].split("\n", 1)[0].strip()
    rip = _RIP.search(console, m.start())
    return f"{line[:120]}; RIP {rip.group(1)}" if rip else line[:120]


class Machine:
    """The QEMU command line and the files of one kernel's boots."""

    def __init__(self, kernel: Kernel, work: Path, python: str, pythonpath: str) -> None:
        self.kernel = kernel
        self.work = work
        self.python = python
        self.pythonpath = pythonpath
        self.accel = accelerator()
        work.mkdir(parents=True, exist_ok=True)

    def _nvdimms(self) -> list[str]:
        args: list[str] = []
        for i, (name, size, align) in enumerate(NVDIMMS):
            img = self.work / f"{name}.img"
            with open(img, "wb") as f:  # fresh and sparse every boot: nothing of the last boot remains
                f.truncate(size)
            args += [
                "-object",
                f"memory-backend-file,id=nv{i},share=on,mem-path={img},size={size},align={align}",
                "-device",
                f"nvdimm,memdev=nv{i},id=nvd{i},label-size={LABEL_SIZE}",
            ]
        return args

    def _qemu(self, initrd: Path, console: Path, results: Path) -> list[str]:
        """The machine: 2 CPUs, the NVDIMMs, the host's root read-only over 9p; the console on the
        first serial port, the guest's step reports on the second; oops=panic ends a boot."""
        return [
            "qemu-system-x86_64",
            "-machine",
            f"pc,nvdimm=on,accel={self.accel}",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "2G,slots=4,maxmem=16G",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
            "-kernel",
            str(self.kernel.vmlinuz),
            "-initrd",
            str(initrd),
            "-append",
            "console=ttyS0 oops=panic panic=-1 quiet loglevel=4",
            "-serial",
            f"file:{console}",
            "-serial",
            f"file:{results}",
            "-virtfs",
            "local,path=/,mount_tag=host,security_model=none,readonly=on",
            *self._nvdimms(),
        ]

    def boot(
        self, plan: Path, timeout: float, on_event: Callable[[dict[str, object]], None]
    ) -> tuple[str, int]:
        """Run one boot; returns (console text, QEMU's exit status; -9 when it was stopped)."""
        initrd = initramfs.build(
            self.kernel.modules,
            self.work / "initrd.gz",
            python=self.python,
            pythonpath=self.pythonpath,
            plan=str(plan),
            device_dax=self.kernel.module,
        )
        console, results = self.work / "console.log", self.work / "results.jsonl"
        for f in (console, results):
            f.write_bytes(b"")
        cmd = self._qemu(initrd, console, results)
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        t0 = last = time.monotonic()
        seen = 0
        rc: int | None = None
        while rc is None:
            time.sleep(0.5)
            rc = proc.poll()
            data = results.read_bytes()
            lines = data[seen:].split(b"\n")
            for line in lines[:-1]:
                seen += len(line) + 1
                try:
                    on_event(json.loads(line))
                except ValueError:
                    continue
                last = time.monotonic()
            now = time.monotonic()
            if rc is None and (now - last > SILENCE or now - t0 > timeout):
                proc.kill()
                proc.wait()
                rc = -9
        return console.read_text(errors="replace"), rc


def run(
    kernel: Kernel,
    files: list[str],
    work: Path,
    progress: Callable[[str], None],
    python: str = sys.executable,
    pythonpath: str | None = None,
) -> tuple[list[ScenarioRun], int]:
    """Every scenario file on ``kernel``; returns the runs and the number of boots it took.

    ``work`` holds the NVDIMM files and logs of this kernel's boots; a second run on the same kernel
    waits for the first (an exclusive lock on ``work``), since both would rewrite the same files."""
    pythonpath = pythonpath or str(Path(__file__).resolve().parents[2])
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"  waiting for another devdax conformance run on {kernel.name} ({work})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_locked(kernel, files, work, progress, python, pythonpath)


class _Watch:
    """What one boot's guest has said on its second serial port, as it says it: every step result
    lands in ``runs`` at once, so an oops loses nothing reported before it."""

    def __init__(self, runs: list[ScenarioRun], boot_no: int) -> None:
        self.runs, self.boot_no = runs, boot_no
        self.ready = self.end = False
        self.linux: object = None
        self.current: int | None = None  # the scenario running now
        self.begun: tuple[int, int] | None = None  # (scenario, step) last begun

    def __call__(self, ev: dict[str, object]) -> None:
        kind = ev.get("event")
        if kind == "ready":
            self.ready, self.linux = True, ev.get("linux")
        elif kind == "scenario":
            self.current = int(str(ev["index"]))
            self.runs[self.current].boot = self.boot_no
        elif kind in ("begin", "teardown"):
            self.begun = (int(str(ev["index"])), int(str(ev["step"])))
        elif kind == "step":
            k, i = int(str(ev["index"])), int(str(ev["step"]))
            detail = None if ev.get("detail") is None else str(ev["detail"])
            self.runs[k].steps[i] = StepResult(k, i, str(ev["op"]), str(ev["outcome"]), detail)
        elif kind == "done":
            k = int(str(ev["index"]))
            self.runs[k].skip = None if ev.get("skip") is None else str(ev["skip"])
            self.runs[k].seconds = float(str(ev.get("seconds", 0)))
            self.current = None
        elif kind == "end":
            self.end = True


def _run_locked(
    kernel: Kernel,
    files: list[str],
    work: Path,
    progress: Callable[[str], None],
    python: str,
    pythonpath: str,
) -> tuple[list[ScenarioRun], int]:
    """Boot until every file has run: an early death is retried; an oops is OOPS at the step that
    began, and the next boot goes on after it; a stop without an oops reruns the scenario."""
    machine = Machine(kernel, work, python, pythonpath)
    runs = [ScenarioRun(f) for f in files]
    start, boots, failures = 0, 0, 0
    while start < len(files):
        plan = work / "plan.json"
        plan.write_text(json.dumps({"files": files, "start": start}))
        boots += 1
        watch = _Watch(runs, boots)
        t0 = time.monotonic()
        console, rc = machine.boot(plan, timeout=120 + 60 * (len(files) - start), on_event=watch)
        log = work / f"console-{boots}.log"
        log.write_text(console)
        if not watch.ready:
            failures += 1
            progress(f"  boot {boots}: died before the guest was ready (exit {rc}); retrying")
            if failures >= BOOT_RETRIES:
                raise BootError(f"{kernel.name}: {failures} boots died before the guest was ready; see {log}")
            continue
        done = sum(1 for r in runs[start:] if r.seconds is not None)
        oops = oops_of(console)
        cur = watch.current
        stopped = f", then {Path(files[cur]).name} stopped it: {oops}" if oops and cur is not None else ""
        progress(f"  boot {boots}: {done} scenarios in {time.monotonic() - t0:.0f} s{stopped}")
        if watch.end or cur is None:
            start = len(files) if watch.end else start + max(done, 1)
            continue
        step = watch.begun[1] if watch.begun is not None and watch.begun[0] == cur else None
        if oops is not None and step is not None:
            _record_stop(runs[cur], cur, files[cur], step, oops)
            start = cur + 1
            continue
        failures += 1
        if failures >= BOOT_RETRIES:
            raise BootError(
                f"{kernel.name}: scenario {files[cur]} stopped the guest without an oops "
                f"(exit {rc}); see {log}"
            )
        runs[cur].steps.clear()
        start = cur
    return runs, boots


def _record_stop(run: ScenarioRun, k: int, file: str, step: int, oops: str) -> None:
    """The oops that stopped a scenario: at a step, or in its teardown (a row of its own)."""
    if step == TEARDOWN:
        run.steps[TEARDOWN] = StepResult(k, TEARDOWN, "teardown", OOPS, oops)
        run.seconds = 0.0
    else:
        _record_oops(run, file, step, oops)


def _record_oops(run: ScenarioRun, file: str, step: int, oops: str) -> None:
    from devdax.scenario import format as fmt

    sc = fmt.load(file)
    run.steps[step] = StepResult(0, step, sc.steps[step].op, OOPS, oops)
    for i in range(step + 1, len(sc.steps)):
        run.steps[i] = StepResult(0, i, sc.steps[i].op, fmt.SKIPPED, "after OOPS")
    run.seconds = 0.0


@dataclass
class ExecResult:
    """What `devdax conformance --exec` saw: the command as run, its exit status and output, an oops."""

    command: str = ""
    device: str = ""
    rc: int | None = None
    output: str = ""
    oops: str | None = None
    during_teardown: bool = False


def run_command(
    kernel: Kernel,
    command: str,
    align: int,
    size: int,
    cwd: str,
    work: Path,
    progress: Callable[[str], None],
    python: str = sys.executable,
    pythonpath: str | None = None,
) -> ExecResult:
    """Boot ``kernel`` once, carve one device and run ``command`` on it (see guest.run_command)."""
    pythonpath = pythonpath or str(Path(__file__).resolve().parents[2])
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        machine = Machine(kernel, work, python, pythonpath)
        plan = work / "plan.json"
        plan.write_text(json.dumps({"exec": {"command": command, "align": align, "size": size, "cwd": cwd}}))
        for attempt in range(1, BOOT_RETRIES + 1):
            res = ExecResult()
            seen = {"ready": False, "teardown": False}

            def on_event(ev: dict[str, object], res: ExecResult = res, seen: dict[str, bool] = seen) -> None:
                kind = ev.get("event")
                if kind == "ready":
                    seen["ready"] = True
                elif kind == "begin":
                    res.command, res.device = str(ev.get("command")), str(ev.get("device"))
                elif kind == "out":
                    res.output += str(ev.get("line", "")) + "\n"
                elif kind == "exec":
                    res.rc = None if ev.get("rc") is None else int(str(ev["rc"]))
                    res.output += str(ev.get("output", ""))
                elif kind == "teardown":
                    seen["teardown"] = True

            console, rc = machine.boot(plan, timeout=600, on_event=on_event)
            (work / "console-exec.log").write_text(console)
            if not seen["ready"]:
                progress(f"  boot {attempt}: died before the guest was ready (exit {rc}); retrying")
                continue
            res.oops = oops_of(console)
            res.during_teardown = seen["teardown"] and res.oops is not None
            return res
    raise BootError(f"{kernel.name}: {BOOT_RETRIES} boots died before the guest was ready; see {work}")
