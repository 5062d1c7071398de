"""The checker and the spec compiled with mypyc: the same Python source, about 1.8x faster.

bench/bench_floor.py shows why a compiled form is the way on: the spec's own Python generating
successors is what a run costs, and no checker around it can remove that. mypyc compiles the
unchanged, type-checked modules of spec/ and of model/'s explorer (MODULES) into C extensions, so
the spec stays the one source; tests/model/test_compiled.py checks, state by state, that the
compiled form reaches the same states with the same traces and verdicts.

Compiled modules cannot sit beside the interpreted ones in one process (they have the same names),
so a compiled run is a child process whose import path starts at the build tree. The child sends
back plain data: counts, every violation's trace as records of devdax.spec.state (pickled by name,
so the parent gets its own classes), and, for the differential test, the states themselves.

    make compiled               # python -m devdax.compiled build: about 5 minutes of gcc
    devdax check --compiled ... # refuses a missing or stale build (one line, exit 2)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devdax.model.checker import CheckResult, Progress, Step, Violation
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS
from devdax.spec.state import State

PACKAGE = Path(__file__).resolve().parent
#: Where `make compiled` puts the build: beside the checkout, ignored by git (build/).
BUILD = PACKAGE.parent / "build" / "compiled"
#: The modules compiled: all of the spec, and the explorer with its reduction. The rest of model/
#: (rendering, ITF, hypothesis machines) and everything above it stay interpreted in the parent.
MODULES = (
    *(f"spec/{p.name}" for p in sorted((PACKAGE / "spec").glob("*.py"))),
    "model/__init__.py",
    "model/checker.py",
    "model/memo.py",
    "model/reduction.py",
    "model/partition.py",
)
#: Copied as source beside them, so that `--compiled --workers N` forks workers running the compiled
#: spec and partitions. The coordinator runs a few times per level: compiled, mypyc would
#: type-check all it imports, Ray included, and the build took 74 s instead of 30.
PLAIN = ("model/parallel.py",)
#: C sources built beside them into the named module: the records' _replace, construction and
#: hash (spec/state.py fast_record), and the liveness walk (model/checker.py cannot_reach_idle).
NATIVE = {"native/record.c": "spec/_record", "native/liveness.c": "model/_liveness"}
OPT_LEVEL = os.environ.get("MYPYC_OPT_LEVEL", "1")  # -O3 compiles several times longer for ~10%


class CompiledError(Exception):
    """The compiled form cannot be used: not built, built from other sources, or failed."""


def digest() -> str:
    """What the build must have been made from: the text of every compiled module."""
    h = hashlib.sha256()
    for m in (*MODULES, *PLAIN, *NATIVE):
        h.update(m.encode() + b"\0" + (PACKAGE / m).read_bytes() + b"\0")
    return h.hexdigest()


def stale(build: Path | None = None) -> str | None:
    """Why the build cannot be used, or None when it was made from today's sources."""
    build = BUILD if build is None else build
    stamp = build / "SOURCES"
    if not stamp.exists():
        return f"no compiled build at {build}: run `make compiled`"
    if stamp.read_text().strip() != digest():
        return "the compiled build is stale (spec/ or model/ changed since): run `make compiled`"
    return None


def build(dest: Path = BUILD, out: IO[str] = sys.stderr) -> None:
    """Copy MODULES into a stub `devdax` package under dest and compile them in place with mypyc."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pkg = tmp / "devdax"
    for m in MODULES + PLAIN:
        (pkg / m).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE / m, pkg / m)
    (pkg / "__init__.py").write_text('"""devdax spec and explorer, compiled by devdax.compiled."""\n')
    srcs = [str(Path("devdax") / m) for m in MODULES]
    env = dict(os.environ, MYPYC_OPT_LEVEL=OPT_LEVEL)
    cmd = [sys.executable, "-m", "mypyc", "--strict", *srcs]
    r = subprocess.run(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        out.write(r.stdout[-4000:])
        raise CompiledError(f"mypyc failed (exit {r.returncode})")
    for src, module in NATIVE.items():
        _cc(PACKAGE / src, pkg / (module + str(sysconfig.get_config_var("EXT_SUFFIX"))), out)
    shutil.rmtree(tmp / "build", ignore_errors=True)
    (tmp / "SOURCES").write_text(digest() + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _cc(src: Path, dest: Path, out: IO[str]) -> None:
    """Compile one C extension module with the compiler and headers Python was built with."""
    cc = shlex.split(str(sysconfig.get_config_var("CC") or "cc"))
    include = sysconfig.get_paths()["include"]
    cmd = [*cc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", f"-I{include}", str(src), "-o", str(dest)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        out.write(r.stdout[-4000:])
        raise CompiledError(f"{src.name}: the C compiler failed (exit {r.returncode})")


@dataclass
class Run:
    """A finished compiled run: the result, the child's own CPU seconds, and its states if asked."""

    result: CheckResult
    cpu: float
    states: list[State] | None


#: What the child runs: read (ctx, options, want_states) from stdin, explore, write plain data back.
_CHILD = """
import pickle, resource, signal, sys, time
import devdax.model.checker as checker
assert checker.__file__.endswith('.so'), checker.__file__
ctx, opts, want = pickle.load(sys.stdin.buffer)
def progress(states, frontier, depth, seconds):
    sys.stderr.write(f"@progress {states} {frontier} {depth} {seconds}\\n")
    sys.stderr.flush()
def children():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime
p0, c0 = time.process_time(), children()
workers, backend = opts.pop('workers'), opts.pop('backend')
states = [] if want else None
found = set()
try:
    if workers is None:
        r = checker.check(ctx, progress=progress, states=states, found=found, **opts)
    else:
        from devdax.model.parallel import parallel_check
        del opts['max_states'], opts['stop_on_violation']
        r = parallel_check(ctx, workers, backend=backend, progress=progress, states=states, found=found,
                           **opts)
except KeyboardInterrupt:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stderr.write("@found " + ",".join(sorted(found)) + "\\n")
    sys.stderr.flush()
    sys.exit(130)
# also when done: a Ctrl-C that reached only the parent may have come while this run was finishing
sys.stderr.write("@found " + ",".join(sorted(found)) + "\\n")
sys.stderr.flush()
doc = dict(states=r.states, transitions=r.transitions, depth=r.depth, complete=r.complete,
           checked=list(r.checked), cpu=time.process_time() - p0 + children() - c0, peak_rss=r.peak_rss,
           violations=[(n, v.message, [(s.action, s.args, s.outcome, s.state) for s in v.trace])
                       for n, v in r.violations.items()],
           states_list=states)
pickle.dump(doc, sys.stdout.buffer)
"""


def run(
    c: Ctx,
    *,
    symmetry: bool = True,
    reduce: bool = True,
    liveness: bool = True,
    max_states: int | None = None,
    stop_on_violation: bool = False,
    only: set[str] | None = None,
    progress: Progress | None = None,
    want_states: bool = False,
    workers: int | None = None,
    backend: str = "process",
    build_dir: Path | None = None,
    found: set[str] | None = None,
) -> Run:
    """model.checker.check(), compiled, in a child process (same arguments, same result); with
    ``workers``, model.parallel.parallel_check() there instead (its workers fork from the child).
    The CPU time reported is the child's and its workers'. On Ctrl-C the child reports the
    properties it had found violated into ``found`` before KeyboardInterrupt reaches the caller."""
    # Over 50 lines on purpose: check()'s keyword arguments are repeated so the two are called the
    # same way; the body is the child's life (start, send, read, reap) in order.
    if workers is not None and (max_states is not None or stop_on_violation):
        raise ValueError("workers: a partitioned search explores whole levels (no max_states)")
    build_dir = BUILD if build_dir is None else build_dir
    why = stale(build_dir)
    if why is not None:
        raise CompiledError(why)
    opts = dict(
        symmetry=symmetry,
        reduce=reduce,
        liveness=liveness,
        max_states=max_states,
        stop_on_violation=stop_on_violation,
        only=only,
        workers=workers,
        backend=backend,
    )
    env = dict(os.environ, PYTHONPATH=str(build_dir))
    proc = subprocess.Popen(
        [sys.executable, "-P", "-c", _CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    errors: list[str] = []
    got: set[str] = set() if found is None else found
    reader = threading.Thread(target=_relay, args=(proc.stderr, progress, errors, got), daemon=True)
    reader.start()
    try:
        _Pickler(proc.stdin).dump((c, opts, want_states))
        proc.stdin.close()
        blob = proc.stdout.read()
        code = proc.wait()
    except KeyboardInterrupt:
        _interrupt(proc)
        reader.join(timeout=INTERRUPT_WAIT)
        raise
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    reader.join()
    if code == 130:
        raise CompiledError("the compiled checker was interrupted")
    if code != 0:
        last = next((e.strip() for e in reversed(errors) if e.strip()), "no message")
        raise CompiledError(f"the compiled checker failed (exit {code}): {last}")
    return _result(pickle.loads(blob))


class _Pickler(pickle.Pickler):
    """Dataclasses travel as calls of their constructors: the child's are compiled (no __dict__,
    so pickle's default of setting the fields one by one fails on frozen ones), and a cached
    field such as Ctx's hash is recomputed there rather than copied."""

    def reducer_override(self, obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            kw = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
            return (functools.partial(type(obj), **kw), ())
        return NotImplemented


#: Seconds an interrupted child gets to report what it found before it is killed.
INTERRUPT_WAIT = 10.0


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    """Stop the child as Ctrl-C stops a checker: a terminal's Ctrl-C reached it too, so give it a
    moment to report; a parent interrupted on its own (kill -INT) passes the signal on."""
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=INTERRUPT_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _relay(stream: IO[bytes], progress: Progress | None, errors: list[str], found: set[str]) -> None:
    """Progress lines from the child go to the caller's callback, its report of the properties it
    found violated (when interrupted, or done) into ``found``; anything else is kept as error."""
    for raw in stream:
        line = raw.decode(errors="replace")
        if line.startswith("@progress "):
            if progress is not None:
                s, f, d, t = line.split()[1:]
                progress(int(s), int(f), int(d), float(t))
        elif line.startswith("@found"):
            found.update(n for n in line.split(" ", 1)[1].strip().split(",") if n)
        else:
            errors.append(line)


def _result(doc: dict[str, Any]) -> Run:
    res = CheckResult(
        states=doc["states"],
        transitions=doc["transitions"],
        depth=doc["depth"],
        complete=doc["complete"],
        checked=doc["checked"],
        peak_rss=doc["peak_rss"],
    )
    for name, msg, trace in doc["violations"]:
        res.violations[name] = Violation(INVARIANTS[name], msg, [Step(*s) for s in trace])
    return Run(res, doc["cpu"], doc["states_list"])


def check(c: Ctx, **kw: Any) -> CheckResult:
    """Drop-in for model.checker.check with the compiled explorer; seconds are the child's wall."""
    t0 = time.perf_counter()
    r = run(c, **kw).result
    r.seconds = time.perf_counter() - t0
    return r


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["build"]:
        sys.stderr.write("usage: python -m devdax.compiled build\n")
        return 2
    try:
        build()
    except CompiledError as e:
        sys.stderr.write(f"devdax.compiled: error: {e}\n")
        return 1
    sys.stderr.write(f"devdax.compiled: built {len(MODULES)} modules into {BUILD}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
