"""Open defects the fuzz steers around, one reproduction each, as strict xfails.

Why strict: the day a fix lands, its test passes, the strict xfail turns that into a failure, and
whoever fixed it removes the marker and the steering in api_machine.py that cites the same class.
Why subprocesses: two of these hang (a touch that never returns, a length whose work is hours), and a
hung call inside the test process could not be ended; a child is killed by the watchdog instead,
and its handler process goes with it (it stops at EOF on its socket). All children start together
when the module's fixture first runs, so the hangs are waited for at once, not one after another.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devdax.impl import sys as dsys

ROOT = Path(__file__).resolve().parents[2]
#: a fixed reproduction finishes in well under a second; this only separates "returns" from "hangs"
WATCHDOG = 12.0

_PRELUDE = """
import errno, os
from devdax.impl.dax import MAP, DaxBus
M2, K4 = 2 << 20, 4096
SH = MAP["MAP_SHARED"]
"""

REPROS: dict[str, str] = {
    # issue 14 class 1: MAP_FIXED over part of a device vma cuts it without the device's may_split;
    # with a device of two ranges, the cut unit straddles two vmas and a touch of it never returns.
    # Fixed: the MAP_FIXED is refused (EINVAL) or the touch returns; either way the script ends.
    "class1_fixed_cut": """
        b = DaxBus()
        a = b.create_region(8 * M2, M2, [[(0, M2), (2 * M2, M2)]])
        c = b.create_region(M2, K4)
        v = b.open(a.devices[0]).mmap(2 * M2, 3, SH)
        try:
            b.open(c.devices[0]).mmap(K4, 3, SH | MAP["MAP_FIXED"], 0, fixed_addr=v.addr + 2 * K4)
        except OSError as e:
            print("RESULT", errno.errorcode[e.errno or 0])
        else:
            print("RESULT", v.touch(3 * K4))
        b.close()
    """,
    # issue 14 class 2: mmap does work per align unit of the requested length, so 2^46 bytes on a 4K
    # device is hours under the bus lock. Fixed: refused up front (ENOMEM) or mapped lazily.
    "class2_mmap_length": """
        b = DaxBus()
        f = b.open(b.create_region(M2, K4).devices[0])
        try:
            f.mmap(1 << 46, 3, SH)
            print("RESULT mapped")
        except OSError as e:
            print("RESULT", errno.errorcode[e.errno or 0])
        b.close()
    """,
    # issue 14 class 2, the same loop in a growing mremap
    "class2_mremap_length": """
        b = DaxBus()
        v = b.open(b.create_region(M2, K4).devices[0]).mmap(K4, 3, SH)
        try:
            v.mremap(0, K4, 1 << 36, True)  # 64 GiB: about 40 s here; larger ones may fail to reserve
            print("RESULT remapped")
        except OSError as e:
            print("RESULT", errno.errorcode[e.errno or 0])
        b.close()
    """,
    # issue 14 class 2 in the spec backend: MAP_POPULATE of 64G walks every unit
    "class2_spec_populate": """
        from devdax.scenario import load
        from devdax.scenario.spec_backend import SpecBackend
        import json, tempfile
        sc = {"format": "devdax-scenario/1", "name": "populate 64G", "source": "issue 14",
              "profile": "modern", "region": {"size": "4M", "align": "4K"}, "steps": [
              {"op": "open", "dev": 0, "flags": ["O_RDWR"], "as": "f"},
              {"op": "mmap", "fd": "f", "length": "64G", "prot": ["PROT_READ"],
               "flags": ["MAP_SHARED", "MAP_POPULATE"], "offset": 0, "as": "m"}]}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as t:
            json.dump(sc, t)
        print("RESULT", SpecBackend().run(load(t.name)))
        os.unlink(t.name)
    """,
    # issue 14 class 3: a create that fails (ENOSPC: every device slot of the core is used) leaves
    # its half-built region in bus.regions. Fixed: the failed region is not there.
    "class3_failed_create": """
        b = DaxBus()
        made = 0
        try:
            while True:
                b.create_region(K4, K4)
                made += 1
        except OSError as e:
            failed = errno.errorcode[e.errno or 0]
        print("RESULT", failed, "listed", len(b.regions) - made)
        b.close()
    """,
    # new (found by the fuzz, issue 14 class 4 not fully fixed): create_region(path=...) of a wrong
    # type raises TypeError from open(2)'s wrapper instead of a ValueError naming path
    "new_path_type": """
        b = DaxBus()
        try:
            b.create_region(M2, M2, path=4096.0)
            print("RESULT accepted")
        except ValueError as e:
            print("RESULT ValueError", "path" in str(e))
        except Exception as e:
            print("RESULT", type(e).__name__)
        b.close()
    """,
    # new (found by the fuzz, issue 14 class 4 not fully fixed): the mapping's view() does not check
    # its arguments: an offset or length of a wrong type raises TypeError from the arithmetic
    "new_view_types": """
        b = DaxBus()
        v = b.open(b.create_region(M2, M2).devices[0]).mmap(M2, 3, SH)
        got = []
        for args in (((1, 2), 1), (0, 4096.0), (0, b"x")):
            try:
                v.view(*args).release()
                got.append("accepted")
            except ValueError as e:
                got.append("offset" in str(e) or "length" in str(e))
            except Exception as e:
                got.append(type(e).__name__)
        print("RESULT", got)
        b.close()
    """,
    # new (found by the fuzz, outside impl/: proofs/cli.py): `devdax prove` keeps argparse's usage
    # block above its error line, where every other subcommand prints one line (cli.py's promise)
    "new_prove_usage_lines": """
        import contextlib, io
        from devdax import cli
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = cli.main(["prove", "--bmc", "x"], io.StringIO(), err)
        print("RESULT", rc, len([ln for ln in err.getvalue().splitlines() if ln.strip()]))
    """,
    # new (found by the fuzz, issue 14 class 6 not fully fixed): open() of a released device looks
    # its minor up in the module-wide kobj_map and returns a file on another bus's device that
    # took the minor; mmap then maps this bus's core slot of that number (another device's memory),
    # and closing the other bus fails with ValueError
    "new_open_crosses_buses": """
        b, b2 = DaxBus(), DaxBus()
        r = b.create_region(M2, M2)
        old = r.devices[0]
        b.remove_region(r)
        other = b2.create_region(M2, M2).devices[0]
        mine = b.create_region(M2, M2).devices[0]
        b.open(mine).mmap(M2, 3, SH).touch(0, True, 0x42)
        try:
            f = b.open(old)
        except OSError as e:
            got = errno.errorcode[e.errno or 0]
        else:
            got = "other bus" if f.dev is other else "this bus"
            if f.dev is other:
                got += f", reads {f.mmap(M2, 3, SH).read_byte(0)}"
        try:
            b2.close()
        except Exception as e:
            got += f", b2.close: {type(e).__name__}"
        b.close()
        print("RESULT", "ok" if got in ("ENOENT", "ENXIO", "this bus") else got)
    """,
    # new (found by the fuzz, issue 14 classes 4 and 5): mm_first_fault=4096.0 passes the check
    # (4096.0 == 4096), and the ctypes store after the handler process started raises TypeError:
    # the handler process, its userfaultfd, the table and the watcher thread are left behind
    "new_bus_float_first_fault": """
        import threading
        kids = lambda: open(f"/proc/self/task/{os.getpid()}/children").read().split()
        before = (len(os.listdir("/proc/self/fd")), threading.active_count(), kids())
        try:
            DaxBus(mm_first_fault=4096.0).close()
            got = "accepted"
        except ValueError as e:
            got = "ValueError" if "mm_first_fault" in str(e) else "ValueError unnamed"
        except Exception as e:
            got = type(e).__name__
        after = (len(os.listdir("/proc/self/fd")), threading.active_count(), kids())
        print("RESULT", got, "leaks" if after != before else "no leak")
    """,
    # new (found by the fuzz): DaxBus.close() removes every region by iterating over bus.regions,
    # from which a region's release removes it: every second region is skipped, never removed, and
    # its devices never released
    "new_close_skips_regions": """
        b = DaxBus()
        rs = [b.create_region(K4, K4) for _ in range(4)]
        b.close()
        print("RESULT", [r.gone for r in rs], len(b.unreleased_devices()))
    """,
}

EXPECT: dict[str, str] = {
    "class1_fixed_cut": "RESULT EINVAL",  # the 4K cut inside a 2M vma
    "class2_mmap_length": "RESULT ",
    "class2_mremap_length": "RESULT ",
    "class2_spec_populate": "RESULT ",
    "class3_failed_create": "RESULT ENOSPC listed 0",
    "new_path_type": "RESULT ValueError True",
    "new_view_types": "RESULT [True, True, True]",
    "new_prove_usage_lines": "RESULT 2 1",
    "new_open_crosses_buses": "RESULT ok",
    "new_bus_float_first_fault": "RESULT ValueError no leak",
    "new_close_skips_regions": "RESULT [True, True, True, True] 0",
}

_STARTED = 0.0
_NO_UFFD = dsys.uffd_unavailable()
pytestmark = pytest.mark.skipif(_NO_UFFD is not None, reason=str(_NO_UFFD))


class Hang(AssertionError):
    """A reproduction gave no answer within WATCHDOG seconds."""


class WrongAnswer(AssertionError):
    """A reproduction answered, and not what the fixed code answers."""


@pytest.fixture(scope="module")
def running() -> Iterator[dict[str, subprocess.Popen[str]]]:
    global _STARTED
    _STARTED = time.monotonic()
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, code in REPROS.items()
    }
    try:
        yield procs
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.communicate()


def _result(procs: dict[str, subprocess.Popen[str]], name: str) -> str:
    """The RESULT line of one reproduction, or an AssertionError saying it hung or crashed."""
    p = procs[name]
    try:
        out, err = p.communicate(timeout=max(0.1, _STARTED + WATCHDOG - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Hang(f"{name}: no answer within {WATCHDOG} s") from None
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
    assert p.returncode == 0 and lines, f"{name}: exit {p.returncode}\n{err[-2000:]}"
    return lines[-1]


#: why each reproduction fails today, and how: a hang, or an answer the fixed code does not give
REASONS: dict[str, tuple[str, type[AssertionError]]] = {}
#: reproductions of defects the fuzz found and that are fixed: plain regression tests now
FIXED: dict[str, str] = {
    "new_path_type": "issue 14 class 4: create_region(path=4096.0) is a ValueError naming path",
    "new_view_types": "issue 14 class 4: view() checks offset and length",
    "new_bus_float_first_fault": "issue 14 class 5: DaxBus(mm_first_fault=4096.0) refused before any start",
    "new_close_skips_regions": "DaxBus.close removes every region (it removed from the list it walked)",
    "new_prove_usage_lines": "devdax prove: a usage error is one line",
    "new_open_crosses_buses": "issue 14 class 6: a minor another bus took over is ENXIO to this bus",
    "class3_failed_create": "issue 14 class 3: a failed probe is unwound, the region leaves the bus",
    "class1_fixed_cut": "issue 14 class 1: MAP_FIXED asks may_split of the vma it cuts (EINVAL)",
    "class2_mmap_length": "issue 14 class 2: a vma's pieces are computed per range, not per unit",
    "class2_mremap_length": "issue 14 class 2: a growing mremap reuses the per-range pieces",
    "class2_spec_populate": "issue 14 class 2: MAP_POPULATE faults only the units the device has",
}
assert REASONS.keys() | FIXED.keys() == REPROS.keys() == EXPECT.keys()
assert not REASONS.keys() & FIXED.keys()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason, raises=raises))
        for name, (reason, raises) in REASONS.items()
    ]
    + list(FIXED),
)
def test_open_defect(running: dict[str, subprocess.Popen[str]], name: str) -> None:
    got = _result(running, name)
    if not got.startswith(EXPECT[name]):
        raise WrongAnswer(f"{name}: {got}, fixed: {EXPECT[name]}")
