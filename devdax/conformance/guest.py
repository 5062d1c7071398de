"""The part of `devdax conformance` that runs inside the guest: scenarios on the real device-dax.

Reads a plan (JSON: scenario files and the index to start at), prepares the pmem regions once (label
areas, so namespaces of chosen sizes can be carved), and runs each scenario with the kernel backend.
Every event is one JSON line on the second serial port, written before the next step starts: a step
that takes the kernel down is then known by the last ``begin`` line the host received, and every step
before it is already reported.

Only the stdlib and the kernel backend's small modules are imported: under TCG every import is slow.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import termios
import time


class Channel:
    """Raw, unbuffered JSON lines to the host (a serial port in the guest; stdout elsewhere)."""

    def __init__(self, path: str | None) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_NOCTTY) if path else 1
        if path:
            attrs = termios.tcgetattr(self.fd)
            attrs[1] &= ~termios.OPOST  # no \n -> \r\n
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def send(self, **record: object) -> None:
        data = (json.dumps(record) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]


def prepare_regions() -> None:
    """Label every DIMM, so namespaces can be carved at any size (ndctl init-labels), and lower each
    region's alignment from the memory-hotplug section (16M) to the subsection (2M), so a namespace can
    be any multiple of 2M (region_align_store accepts it while the region is disabled)."""

    def ndctl(*args: str) -> None:
        subprocess.run(["ndctl", *args], capture_output=True, timeout=120, check=False)

    ndctl("disable-region", "all")
    ndctl("init-labels", "-f", "all")
    for region in sorted(os.listdir("/sys/bus/nd/devices")):
        if region.startswith("region"):
            try:
                with open(f"/sys/bus/nd/devices/{region}/align", "w") as f:
                    f.write(str(2 << 20))
            except OSError:
                pass
    ndctl("enable-region", "all")


def run_command(spec: dict[str, object], chan: Channel) -> None:
    """`devdax conformance --exec`: carve one device, run a shell command on it, report its output.

    ``{dev}`` and ``{namespace}`` in the command become the device (``dax1.0``) and its namespace, so
    a reproducer written for any machine runs here as it is. The namespace is destroyed afterwards
    unless the command did that itself."""
    from devdax.scenario import kernel_devices as kd

    carver = kd.Carver()
    try:
        dev = carver.carve(int(str(spec["size"])), int(str(spec["align"])))
    except kd.SetupError as e:
        chan.send(event="exec", rc=None, output=f"setup: {e}")
        return
    cmd = str(spec["command"]).replace("{dev}", dev.name).replace("{namespace}", dev.namespace)
    chan.send(event="begin", command=cmd, device=dev.name, namespace=dev.namespace)
    # line by line: a command that takes the kernel down has its output up to that point reported
    proc = subprocess.Popen(
        ["/bin/sh", "-c", cmd],
        cwd=str(spec.get("cwd", "/")),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        chan.send(event="out", line=line.rstrip("\n")[-2000:])
    chan.send(event="exec", rc=proc.wait())
    chan.send(event="teardown", step=-1)
    with contextlib.suppress(kd.SetupError):  # the command may have destroyed it already
        carver.destroy_all()


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        plan = json.load(f)
    chan = Channel(argv[1] if len(argv) > 1 else None)
    t0 = time.monotonic()
    prepare_regions()
    from devdax.scenario import format as fmt
    from devdax.scenario.kernel_backend import KernelBackend

    chan.send(event="ready", linux=os.uname().release, seconds=round(time.monotonic() - t0, 2))
    if "exec" in plan:
        run_command(plan["exec"], chan)
        chan.send(event="end")
        return 0
    files: list[str] = plan["files"]
    for k in range(int(plan.get("start", 0)), len(files)):
        sc = fmt.load(files[k])
        chan.send(event="scenario", index=k, file=files[k])

        def report(
            i: int, outcome: str | None, detail: str | None, k: int = k, sc: fmt.Scenario = sc
        ) -> None:
            if outcome is None:
                chan.send(event="teardown" if i < 0 else "begin", index=k, step=i)
            else:
                chan.send(event="step", index=k, step=i, op=sc.steps[i].op, outcome=outcome, detail=detail)

        backend = KernelBackend(report)
        t = time.monotonic()
        outs = backend.run(sc)
        if backend.skip_reason is not None:
            for i, (st, o) in enumerate(zip(sc.steps, outs, strict=True)):
                chan.send(event="step", index=k, step=i, op=st.op, outcome=o, detail=backend.skip_reason)
        chan.send(event="done", index=k, skip=backend.skip_reason, seconds=round(time.monotonic() - t, 2))
    chan.send(event="end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
