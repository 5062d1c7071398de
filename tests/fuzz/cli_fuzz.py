"""Hostile command lines and scenario files for the `devdax` CLI, and the CLI's oracle.

Why in-process (devdax.cli.main with its output captured) and not one subprocess per command line:
an interpreter start costs a third of a second, a call costs milliseconds; test_fuzz_cli.py still
runs a few command lines through the installed `devdax` script to check the process's own exit.

The oracle (issue 14 class 8): the exit status is 0, 1, 2 or 3; stderr holds no traceback and no
"internal error" (the last-resort handler in cli.main, which means an exception no command turned
into a message); a usage error (2) is one line; a run leaves no fd, mapping, thread or process.

Command lines that would do more than a fuzz call should are never built: `all` and `prove`
without `--list` (minutes of model checking and solving), `check` without a `--max-states` bound,
`conformance` without `--recorded` (it installs QEMU and boots kernels) or without a file (the
whole suite: a minute), `--record` and
`--update-known` (they write into tests/kernel-results/), `--exec`, and the kernel backend of
`scenario run` (it carves namespaces with ndctl on the machine's own pmem).
"""

from __future__ import annotations

import io
import json
import os
import signal
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from devdax import cli

from . import harness

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "scenarios"

#: option values that are wrong for most options and right for a few
VALUES = (
    "",
    "-1",
    "0",
    "1",
    "2",
    "x",
    "1e3",
    "0x10",
    "\u0663",
    str(10**20),
    " 3",
    "nan",
    "inf",
    "4K",
    "2M",
    "1G",
    "3M",
    "--",
    "pte",
    "modern",
    "v4.7",
    "M21",
    "2M,4K",
    ",",
)
CHECK_OPTS = (
    "--profile",
    "--variant",
    "--devices",
    "--files",
    "--vmas",
    "--cpus",
    "--faults",
    "--units",
    "--ranges",
    "--generations",
    "--binds",
    "--align",
    "--device-aligns",
    "--first-fault",
    "--max-states",
)
CHECK_FLAGS = (
    "--fork",
    "--rdonly",
    "--munmap-parts",
    "--add-failure",
    "--race",
    "--syscalls",
    "--no-symmetry",
    "--no-reduction",
    "--json",
    "--quiet",
)
PROVE_OPTS = ("--profile", "--variant", "--timeout", "--only", "--bmc", "--cpus", "--faults", "--units")
CONF_OPTS = ("--kernel", "--align", "--size")

# ---------------------------------------------------------------------------- scenario files --

_OPS = (
    "open",
    "close",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "msync",
    "touch",
    "check",
    "fork_touch",
    "read",
    "write",
    "fsync",
    "lseek",
    "fallocate",
    "ioctl",
    "disable",
    "enable",
    "remove",
    "disable_namespace",
    "enable_namespace",
)
#: sizes and offsets. Nothing between 64M and 2^64: a length there is accepted and its work grows with
#: it (issue 14 class 2, test_known_defects.py), so "9999G" would be a hang, not a hostile input
_SIZES: tuple[object, ...] = (
    0,
    4096,
    "4K",
    "2M",
    "4M",
    "64M",
    -4096,
    "1X",
    "-1M",
    1.5,
    2**70,
    "99999999999999999999G",
)
_SMALL = st.sampled_from(_SIZES)
_JUNK: tuple[object, ...] = (None, [], {}, "", True, -1, 2**70)


@st.composite
def scenario_step(draw: st.DrawFn) -> dict[str, object]:
    op = draw(st.sampled_from(_OPS))
    fd = draw(st.sampled_from(("f0", "f1", "zz")))
    m = draw(st.sampled_from(("m0", "m1", "zz")))
    off = draw(_SMALL)
    step: dict[str, object] = {"op": op}
    if op == "open":
        flags = draw(
            st.sampled_from((["O_RDWR"], ["O_RDONLY"], ["O_WRONLY", "O_SYNC"], ["O_DIRECT"], ["O_BOGUS"]))
        )
        step.update(dev=draw(st.sampled_from((0, 1, 7, -1))), flags=flags, **{"as": fd})
    elif op == "mmap":
        # no fixed_offset yet: MAP_FIXED over part of a mapping hung a touch (issue 14 class 1, fixed)
        flags = draw(
            st.sampled_from((["MAP_SHARED"], ["MAP_PRIVATE"], ["MAP_SHARED", "MAP_POPULATE"], ["MAP_X"]))
        )
        prot = draw(st.sampled_from((["PROT_READ", "PROT_WRITE"], ["PROT_READ"], [], ["PROT_NONE"])))
        step.update(fd=fd, length=draw(_SMALL), prot=prot, flags=flags, offset=off, **{"as": m})
    elif op in ("munmap", "mprotect", "madvise", "msync"):
        step.update(map=m, offset=off, length=draw(_SMALL))
        if op == "mprotect":
            step["prot"] = ["PROT_READ"]
        if op == "madvise":
            step["advice"] = draw(
                st.sampled_from(("MADV_DONTNEED", "MADV_HUGEPAGE", "MADV_POPULATE_READ", "X"))
            )
        if op == "msync":
            step["flags"] = draw(st.sampled_from((["MS_SYNC"], ["MS_ASYNC", "MS_SYNC"], [])))
    elif op == "mremap":
        step.update(map=m, offset=off, old_length=draw(_SMALL), new_length=draw(_SMALL))
    elif op in ("touch", "fork_touch", "check"):
        step.update(map=m, offset=off)
        if op == "check":
            step["value"] = draw(st.sampled_from((0, 65, 256, -1)))
        else:
            step["access"] = draw(st.sampled_from(("read", "write", "exec")))
    elif op in ("read", "write", "fsync", "close", "ioctl"):
        step["fd"] = fd
        if op == "ioctl":
            step["request"] = draw(st.sampled_from(("FIONREAD", "BLKGETSIZE64", "X")))
    elif op in ("lseek", "fallocate"):
        step.update(fd=fd, offset=off)
        if op == "lseek":
            step["whence"] = draw(st.sampled_from(("SEEK_SET", "SEEK_END", 9)))
        else:
            step.update(mode=draw(st.sampled_from((0, "PUNCH_HOLE", "X"))), length=draw(_SMALL))
    else:
        step["dev"] = draw(st.sampled_from((0, 1, 5)))
    if draw(st.integers(0, 29)) == 0:  # one field of the wrong type, or one too many
        key = draw(st.sampled_from([*step, "extra"]))
        step[key] = draw(st.sampled_from(_JUNK))
    return step


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, object]:
    align = draw(st.sampled_from(("4K", "4K", "2M", "2M", "2M", "2M", "1G", "3M")))
    size = {"4K": "1M", "2M": "8M", "1G": "1G", "3M": "6M"}[align]
    body: dict[str, object] = {
        "format": draw(st.sampled_from(("devdax-scenario/1",) * 9 + ("devdax-scenario/9",))),
        "name": "fuzz",
        "source": "tests/fuzz",
        "profile": draw(st.sampled_from(("modern",) * 5 + ("v4.10",) * 3 + ("v4.7", "bogus"))),
        "region": {"size": size, "align": align},
        "steps": draw(st.lists(scenario_step(), max_size=12)),
    }
    if draw(st.booleans()):
        body["devices"] = [{"size": size}] if align != "2M" else [{"size": "4M"}, {"size": "4M"}]
    return body


def write_pool(folder: Path) -> list[str]:
    """Fixed hostile files (broken JSON, deep nesting, 40 opens, binary...) next to a few of the
    suite's own scenarios; returns their paths and two that are not files."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {"format": "devdax-scenario/1", "name": "n", "source": "s", "profile": "modern"}
    opens = [{"op": "open", "dev": 0, "flags": ["O_RDWR"], "as": f"f{i}"} for i in range(40)]
    texts: dict[str, str | bytes] = {
        "broken.json": "{not json",
        "empty.json": "",
        "list.json": "[]",
        "deep.json": json.dumps(base)[:-1] + ', "notes": ' + "[" * 100000 + "]" * 100000 + "}",
        "opens40.json": json.dumps({**base, "steps": opens}),
        "bigint.json": json.dumps({**base, "region": {"size": 10**30, "align": "2M"}, "steps": []}),
        "steps_str.json": json.dumps({**base, "steps": "x"}),
        "dupkey.json": '{"format": "devdax-scenario/1", "format": "x"}',
        "binary.json": b"\xff\xfe\x00\x01garbage",
        "nan.json": json.dumps({**base, "region": {"size": float("nan")}, "steps": []}),
    }
    out: list[str] = []
    for name, text in texts.items():
        p = folder / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)
        out.append(str(p))
    (folder / "emptydir").mkdir(exist_ok=True)
    out += [str(folder / "emptydir"), str(folder / "missing.json")]
    out += [str(SCENARIOS / n) for n in ("s01_private_rdonly_einval.json", "s41_data_persists.json")]
    return out


# ------------------------------------------------------------------------------ command lines --


def _opts(draw: st.DrawFn, names: tuple[str, ...], n: int) -> list[str]:
    out: list[str] = []
    for _ in range(draw(st.integers(0, n))):
        out += [draw(st.sampled_from(names)), draw(st.sampled_from(VALUES))]
    return out


@st.composite
def argv(draw: st.DrawFn, pool: list[str], generated: str) -> list[str]:
    """A command line over every subcommand; ``generated`` is the path of this example's random
    scenario file, ``pool`` the fixed files."""
    files = draw(st.lists(st.sampled_from([*pool, generated, generated]), min_size=0, max_size=2))
    cmd = draw(
        st.sampled_from(
            (
                "check",
                "check",
                "variants",
                "explain",
                "prove",
                "scenario",
                "scenario",
                "conformance",
                "all",
                "zzz",
                "",
                "-h",
            )
        )
    )
    if cmd == "check":
        flags = draw(st.lists(st.sampled_from(CHECK_FLAGS), max_size=3))
        return ["check", *_opts(draw, CHECK_OPTS, 3), *flags, "--max-states", "300"]
    if cmd == "variants":
        return ["variants", *draw(st.sampled_from(([], ["--json"], ["--bogus"], ["x"])))]
    if cmd == "explain":
        name = draw(
            st.sampled_from(("M21", "F1", "refcount_exact_all", "modern", "open", "", "x" * 500, "../etc"))
        )
        return ["explain", name, *draw(st.sampled_from(([], ["--json"], ["y"])))]
    if cmd == "prove":
        return ["prove", *_opts(draw, PROVE_OPTS, 3), *draw(st.sampled_from(([], ["--json"]))), "--list"]
    if cmd == "scenario":
        sub = draw(st.sampled_from(("run", "diff", "bogus", "")))
        if sub == "run":
            extra = ["--backend", draw(st.sampled_from(("spec", "impl", "impl", "bogus", "")))]
        elif sub == "diff":
            names = ("spec,impl", "spec,impl,kernel", "kernel", ",", "spec,,impl", "impl,bogus", "")
            extra = ["--backends", draw(st.sampled_from(names))]
        else:
            extra = []
        if draw(st.integers(0, 19)) == 0:
            extra.append("--bogus")
        return ["scenario", *([sub] if sub else []), *extra, *files]
    if cmd == "conformance":
        # with no file it compares the whole suite: a minute of work, not a fuzz call
        files = files or [generated]
        return [
            "conformance",
            "--recorded",
            *_opts(draw, CONF_OPTS, 2),
            *draw(st.sampled_from(([], ["--json"]))),
            *files,
        ]
    if cmd == "all":
        return ["all", "--bogus"]  # a valid `all` is every check and proof: minutes
    return [cmd] if cmd else []


# ----------------------------------------------------------------------------------- oracle --


@dataclass(frozen=True)
class CliRun:
    argv: tuple[str, ...]
    rc: int
    out: str
    err: str


def run(args: list[str]) -> CliRun:
    """devdax.cli.main in this process, with stdout and stderr captured (also what a subcommand
    writes to sys.stdout / sys.stderr directly), under the watchdog."""
    out, err = io.StringIO(), io.StringIO()
    os.environ.pop("DEVDAX_TRACEBACK", None)
    t = harness.current()
    t.calls += 1
    t.by_op[f"devdax {args[0] if args else ''}"] += 1
    signal.setitimer(signal.ITIMER_REAL, harness.CALL_TIMEOUT)
    with redirect_stdout(out), redirect_stderr(err):
        try:
            rc: object = cli.main(args, out, err)
        except SystemExit as e:  # argparse's --help exits
            rc = e.code if isinstance(e.code, int) else 0 if e.code is None else 2
        except Exception as e:  # main's own last resort failed
            rc = -1
            err.write(f"Traceback (not caught by cli.main): {type(e).__name__}: {e}\n")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return CliRun(tuple(args), rc if isinstance(rc, int) else -1, out.getvalue(), err.getvalue())


def judge(r: CliRun) -> None:
    """Report what breaks the CLI's promises to the current tally."""
    t = harness.current()
    shown = " ".join(r.argv)[:300]
    t.outcomes[f"exit {r.rc}"] += 1
    if r.rc not in (0, 1, 2, 3):
        t.fail("cli-exit", f"devdax {shown}: exit {r.rc}: {r.err[-300:]}")
    if "Traceback" in r.err:
        t.fail("cli-traceback", f"devdax {shown}: {r.err[-600:]}")
    elif "internal error" in r.err:
        t.fail("cli-internal", f"devdax {shown}: {r.err.strip()[-300:]}")
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    # `-h` anywhere prints help and exits 0
    if r.rc == 2 and len(lines) > 1:
        t.fail("cli-usage-lines", f"devdax {shown}: exit 2 with {len(lines)} lines on stderr: {r.err[-300:]}")


CLI_FAILURES = ("cli-exit", "cli-traceback", "cli-internal", "cli-usage-lines")
