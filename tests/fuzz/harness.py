"""The fuzz suite's oracle, watchdog and leak probe, shared by the short run (pytest) and the long one
(bench/bench_fuzz.py).

Why one module: the short run must fail on exactly what the long run counts, so both classify an
outcome, detect a hang and diff the process's resources with the same code. The long run counts and
goes on; the short run raises at the first failure so that hypothesis can shrink it into a program.
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import inspect
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from devdax.impl.kobject import KernelBug

#: far above any call of the API here (the slowest, a 1G region's fallocate or a bus close, takes well
#: under a second on an idle machine): a call still running then is a hang, not a slow call
CALL_TIMEOUT = 30.0

#: KernelBug messages the API documents (impl/README.md, "Errors the device layer raises"): F1/M21's
#: NULL private_data in check_vma. Any other KernelBug is an oops nobody documented: a failure.
DOCUMENTED_OOPS = ("null deref: dax_mmap -> check_vma(NULL)",)

#: failure columns, in the order the benchmarks print them
FAILURES = ("foreign", "valueerror-unnamed", "bad-errno", "kernelbug-undocumented", "stale", "lost")
LEAKS = ("leak-fds", "leak-maps", "leak-threads", "leak-children")


class FuzzFailure(AssertionError):
    """A broken promise of the API; its message is what the long run lists as a reproduction."""


@dataclass
class Tally:
    """Outcomes by label (``ok``, ``SIGBUS``, an errno name, ``ValueError``, ``KernelBug``) and
    failures by column. ``strict``: raise at the first failure (pytest) instead of counting it."""

    strict: bool = True
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    calls: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    op_outcomes: Counter[str] = field(default_factory=Counter)

    def fail(self, column: str, message: str) -> None:
        self.failures[column] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{column}: {message}")
        if self.strict:
            raise FuzzFailure(f"{column}: {message}")


#: the tally the state machines report to; the runner (test or benchmark) installs its own
TALLY = Tally()


def install(t: Tally) -> None:
    global TALLY
    TALLY = t


def current() -> Tally:
    return TALLY


# ------------------------------------------------------------------------------------ watchdog --


@contextmanager
def watchdog() -> Iterator[None]:
    """SIGALRM, if a call outlives CALL_TIMEOUT, dumps every thread's stack and then kills the process
    (faulthandler chains to the default action). Why a fatal signal and not an exception: a hung
    touch waits inside the kernel (a userfault that is retried forever) or holds the GIL in a
    memoryview fault; neither returns to Python, but a fatal signal ends both. The long run runs its
    chunks in child processes and counts such a death as a hang."""
    old = signal.signal(signal.SIGALRM, signal.SIG_DFL)
    faulthandler.register(signal.SIGALRM, all_threads=True, chain=True)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.unregister(signal.SIGALRM)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------- the oracle --

_PARAMS: dict[object, frozenset[str]] = {}


def _names(fn: Callable[..., object]) -> frozenset[str]:
    key = getattr(fn, "__func__", fn)
    got = _PARAMS.get(key)
    if got is None:
        try:
            got = frozenset(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            got = frozenset()
        _PARAMS[key] = got
    return got


def classify(fn: Callable[..., object], exc: BaseException) -> tuple[str, str | None]:
    """(outcome label, failure column or None) of an exception a call raised."""
    if isinstance(exc, OSError):  # OSError(ENOENT, ...) is built as its subclass FileNotFoundError
        code = exc.errno
        if code is None or code not in errno.errorcode:
            return "OSError?", "bad-errno"
        return errno.errorcode[code], None
    if type(exc) is ValueError:
        text = str(exc)
        # "bus: closed" names the object the method was called on: the bus is the argument there.
        # A message may name the argument by a shorter field name: "length: ..." for old_length.
        names = _names(fn) | {"bus"}
        field = text.split(":")[0].split("[")[0].strip()
        if any(n in text for n in names) or (field and any(field in n for n in names)):
            return "ValueError", None
        return "ValueError", "valueerror-unnamed"
    if isinstance(exc, KernelBug):
        if str(exc).startswith(DOCUMENTED_OOPS):
            return "KernelBug", None
        return "KernelBug", "kernelbug-undocumented"
    return type(exc).__name__, "foreign"


def call(what: str, fn: Callable[..., object], *args: object, **kwargs: object) -> tuple[str, object]:
    """Run one API call under the watchdog; returns (label, result). The label of a returned string
    outcome ("ok", "SIGBUS", "SIGSEGV", "mismatch") is that string, of any other result "ok"."""
    t = TALLY
    t.calls += 1
    op = what.split("(")[0].split(".")[-1]
    t.by_op[op] += 1
    signal.setitimer(signal.ITIMER_REAL, CALL_TIMEOUT)
    try:
        result = fn(*args, **kwargs)
    except (KeyboardInterrupt, FuzzFailure):
        raise
    except BaseException as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        label, column = classify(fn, exc)
        t.outcomes[label] += 1
        t.op_outcomes[f"{op} {label}"] += 1
        if column is not None:
            t.fail(column, f"{what} raised {type(exc).__name__}: {exc}")
        return label, exc
    signal.setitimer(signal.ITIMER_REAL, 0)
    label = result if isinstance(result, str) and result in ("ok", "SIGBUS", "SIGSEGV", "mismatch") else "ok"
    t.outcomes[label] += 1
    t.op_outcomes[f"{op} {label}"] += 1
    return label, result


# ------------------------------------------------------------------------------- leak probing --


def _our_maps() -> frozenset[str]:
    """The mappings an emulation can leave behind: its memfd and device files, and the PROT_NONE
    reservations placement makes (always above 1 GiB: the length plus a 1 GiB slack). Ordinary
    anonymous memory is the interpreter's heap and comes and goes by itself."""
    out: set[str] = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            path = parts[5].strip() if len(parts) > 5 else ""
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            ours = any(k in path for k in ("memfd:", "devdax", "/dev/shm/", "userfaultfd"))
            reservation = not path and parts[1] == "---p" and hi - lo >= 1 << 30
            if ours or reservation:
                out.add(line.strip())
    return frozenset(out)


def _fds() -> dict[str, str]:
    out: dict[str, str] = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, gone already
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


def _children() -> frozenset[str]:
    try:
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()


@dataclass(frozen=True)
class Snapshot:
    fds: dict[str, str]
    maps: frozenset[str]
    threads: int
    children: frozenset[str]


def snapshot() -> Snapshot:
    return Snapshot(_fds(), _our_maps(), len(os.listdir("/proc/self/task")), _children())


def leaks(before: Snapshot, settle: float = 3.0) -> dict[str, str]:
    """What exists now and did not at ``before``, by column. Threads and child processes end
    asynchronously after a close (the handler's reaper, the pidfd watcher): they get ``settle``
    seconds to go, which is a bound on a wait, not a speed claim."""
    deadline = time.monotonic() + settle
    while True:
        now = snapshot()
        found: dict[str, str] = {}
        extra_fds = {fd: p for fd, p in now.fds.items() if before.fds.get(fd) != p}
        if extra_fds:
            found["leak-fds"] = repr(sorted(extra_fds.values()))
        if now.maps - before.maps:
            found["leak-maps"] = repr(sorted(now.maps - before.maps)[:4])
        if now.threads > before.threads:
            found["leak-threads"] = f"{now.threads} threads, {before.threads} before"
        if now.children - before.children:
            found["leak-children"] = repr(sorted(now.children - before.children))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)
