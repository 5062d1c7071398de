"""The mypyc-compiled spec and explorer (devdax.compiled) against the interpreted ones: the same
states in the same order, the same counts, and the same violations with the same traces, on small
configurations, each profile's own default and every variant; and the one piece of it written in
C, the records' _replace and __new__ (devdax/native/record.c), against the stock namedtuple ones.

mypyc checks type annotations at run time, so a spec function whose annotation is narrower than
what it is given runs interpreted and fails compiled: this is where that shows. CI builds the
compiled form first (`make compiled` in .ci/run) and fails here without it; elsewhere the tests
skip with the command that builds it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from devdax import compiled
from devdax.model.checker import CheckResult, check
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State
from devdax.spec.variants import PROFILE_CONFIGS, VARIANTS, variant_config

CONFIGS: dict[str, Config] = {
    "race-2cpu-pud": Config(profile="v4.10", race=True, cpus=2, faults=2, units=2, files=1, vmas=1),
    "race-3cpu-pmd": Config(
        profile="v4.10", race=True, cpus=3, faults=1, units=2, files=1, vmas=1, first_fault="pmd"
    ),
    "v4.10-2files-2cpus": Config(files=2, vmas=2, cpus=2, generations=1),
    "modern-binds1-fork": Config(profile="modern", binds=1, fork=True, munmap_parts=True),
    **{f"default-{p}": cfg for p, cfg in PROFILE_CONFIGS.items() if p != "v4.10"},
    **{f"variant-{n}": variant_config(v) for n, v in VARIANTS.items()},
}

#: tests/model/conftest.py's ``explored`` fixture: check(cfg) and its states, once per session
Explored = Callable[[Config], tuple[CheckResult, list[State]]]


@pytest.fixture
def built() -> None:
    why = compiled.stale()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must build the compiled form first: {why}")
    pytest.skip(why)


def traces(res: CheckResult) -> dict[str, tuple[str, list[tuple[object, ...]]]]:
    return {
        n: (v.message, [(s.action, s.args, s.outcome, s.state) for s in v.trace])
        for n, v in res.violations.items()
    }


@pytest.mark.parametrize("name", list(CONFIGS))
def test_compiled_explores_what_the_spec_explores(name: str, built: None, explored: Explored) -> None:
    c = Ctx.of(CONFIGS[name])
    want, states = explored(CONFIGS[name])
    got = compiled.run(c, want_states=True)
    assert got.states == states  # same states, same discovery order
    r = got.result
    assert (r.states, r.transitions, r.depth, r.complete, r.checked) == (
        want.states,
        want.transitions,
        want.depth,
        want.complete,
        want.checked,
    )
    assert traces(r) == traces(want)


def test_the_v4_10_default_agrees_without_the_state_list(built: None, explored: Explored) -> None:
    c = Ctx.of(PROFILE_CONFIGS["v4.10"])
    want, _ = explored(PROFILE_CONFIGS["v4.10"])
    r = compiled.check(c)
    assert (r.states, r.transitions, r.depth) == (want.states, want.transitions, want.depth)
    assert traces(r) == traces(want)


def test_a_stale_or_missing_build_is_refused(tmp_path: Path) -> None:
    assert "no compiled build" in (compiled.stale(tmp_path) or "")
    (tmp_path / "SOURCES").write_text("0" * 64 + "\n")
    assert "stale" in (compiled.stale(tmp_path) or "")
    with pytest.raises(compiled.CompiledError, match="stale"):
        compiled.run(Ctx.of(CONFIGS["race-2cpu-pud"]), build_dir=tmp_path)


def test_progress_reaches_the_caller(built: None) -> None:
    """Reports come every half second: the run must last a few (two devices, 120,000 states: about
    4 s compiled; the one-device default now ends before its first report)."""
    seen: list[int] = []
    cfg = replace(PROFILE_CONFIGS["v4.10"], devices=2)
    compiled.run(Ctx.of(cfg), max_states=120_000, progress=lambda s, f, d, t: seen.append(s))
    assert seen and seen == sorted(seen) and seen[-1] <= 120_000


def test_the_cli_refuses_a_missing_build_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devdax import cli

    monkeypatch.setattr(compiled, "BUILD", tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["check", "--race", "--cpus", "2", "--compiled"], out, err)
    assert code == 2
    assert err.getvalue().count("\n") == 1 and "make compiled" in err.getvalue(), err.getvalue()


def test_the_cli_runs_compiled_with_the_same_report(built: None) -> None:
    from devdax import cli

    argv = ["check", "--race", "--cpus", "2", "--quiet"]
    reports = []
    for extra in ([], ["--compiled"]):
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(argv + extra, out, err)
        reports.append((code, out.getvalue()))
    assert reports[0] == reports[1]


def test_a_failing_child_is_one_line(built: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from devdax import cli

    monkeypatch.setattr(
        compiled, "_CHILD", "import sys\nsys.stderr.write('Traceback\\nboom\\n')\nsys.exit(3)"
    )
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["check", "--race", "--cpus", "2", "--compiled"], out, err) == 2
    assert err.getvalue() == "devdax: error: --compiled: the compiled checker failed (exit 3): boom\n"


#: The parent of a compiled run, pressing Ctrl-C at the first progress report past depth 6: the
#: signal is aimed at the main thread (progress is relayed on another one), once.
_CTRL_C = """
import signal, sys, threading
from devdax import cli
sent = threading.Event()
def ctrl_c(self, states, frontier, depth, seconds):
    if depth >= 6 and not sent.is_set():
        sent.set()
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
cli.ProgressLine.__call__ = ctrl_c
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_ctrl_c_names_the_violations_the_child_found(workers: list[str], built: None) -> None:
    """Ctrl-C reaches the parent alone (as `kill -INT` would); it passes it on, and the child says
    which properties it had found broken. The parent is a process of its own, so that its Ctrl-C is
    a fresh interpreter's and not whatever an earlier test left in this one."""
    argv = ["check", "--variant", "no-synchronize", "--cpus", "10", "--faults", "2", "--units", "2"]
    p = subprocess.run(
        [sys.executable, "-c", _CTRL_C, *argv, "--compiled", *workers],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert p.returncode == 130 and p.stdout == "", p.stderr
    assert "violations found so far: no_entry_after_kill, no_map_of_dead_device (exit 130)" in p.stderr


@pytest.mark.parametrize("name", ["race-3cpu-pmd", "variant-M21", "variant-no-synchronize"])
def test_compiled_workers_explore_what_the_spec_explores(name: str, built: None) -> None:
    """--compiled --workers 2: the partitioned search forked from the compiled child."""
    c = Ctx.of(CONFIGS[name])
    states: list[State] = []
    want = check(c, states=states)
    got = compiled.run(c, want_states=True, workers=2)
    assert got.states == states
    r = got.result
    assert (r.states, r.transitions, r.depth, r.complete) == (
        want.states,
        want.transitions,
        want.depth,
        want.complete,
    )
    assert traces(r) == traces(want)


def test_workers_refuse_a_state_bound() -> None:
    with pytest.raises(ValueError, match="workers"):
        compiled.run(Ctx.of(CONFIGS["race-2cpu-pud"]), workers=2, max_states=10)


#: Run with the build tree first on the path: the records' C _replace and __new__
#: (devdax/native/record.c) against the stock namedtuple methods, on every record class, random
#: records, arguments and field subsets.
def _on_the_build(script: str) -> list[str]:
    """The words a script prints when run in a child on the compiled build (its first argument
    is the build directory, which it puts first on sys.path); the child must succeed."""
    out = subprocess.run(
        [sys.executable, "-c", script, str(compiled.BUILD)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


_RECORD_CHECK = """
import pickle, random, sys
sys.path.insert(0, sys.argv[1])
from collections import namedtuple
from devdax.spec import _record, geometry, state, system
classes = (state.Region, state.Dev, state.File, state.Vma, state.Entry, state.Cpu, state.Admin, state.State,
           system.Transition, geometry.FaultDecision)
rng = random.Random(15)
values = [0, 1, -1, 2**70, "x", None, (), (1,), True]

def outcome(f):
    try:
        return f()
    except TypeError:
        return TypeError

for cls in classes:
    assert type(cls.__dict__["_replace"]).__name__ == "method_descriptor", cls  # the C method is in use
    assert type(cls.__dict__["__new__"].__func__).__name__ == "builtin_function_or_method", cls
    assert cls.__basicsize__ == tuple.__basicsize__ + 8, cls  # the hash word is in use
    fields, defaults = cls._fields, cls._field_defaults
    for _ in range(2000):  # construction: positional, keywords, defaults, and the refusals
        npos = rng.randint(0, len(fields) + 1)
        pos = [rng.choice(values) for _ in range(npos)]
        names = list(fields) + ["no_such_field"]
        kw = {f: rng.choice(values) for f in rng.sample(names, rng.randint(0, 3))}
        if npos > len(fields) or "no_such_field" in kw or any(f in kw for f in fields[:npos]):
            want = TypeError
        else:
            vals = pos + [kw.get(f, defaults.get(f, TypeError)) for f in fields[npos:]]
            want = TypeError if TypeError in vals else tuple.__new__(cls, vals)
        got = outcome(lambda: cls(*pos, **kw))
        assert got == want and (got is TypeError or type(got) is cls), (cls, pos, kw, got, want)
        if got is not TypeError:
            assert all(a is b for a, b in zip(got, want)), (cls, pos, kw)
            assert hash(got) == hash(tuple(got)) == hash(got), (cls, got)  # computed, then kept
            again = pickle.loads(pickle.dumps(got, pickle.HIGHEST_PROTOCOL))
            assert again == got and type(again) is cls
            assert cls._make(got) == got
    fields = cls._fields
    for _ in range(2000):
        rec = cls._make(rng.choice(values) for _ in fields)
        chosen = rng.sample(fields, rng.randint(0, len(fields)))
        changes = {f: rng.choice(values) for f in chosen}
        want = tuple.__new__(cls, [changes.get(f, v) for f, v in zip(fields, rec)])
        got = rec._replace(**changes)
        assert type(got) is cls and got == want, (cls, changes)
        assert all(a is b for a, b in zip(got, want)), (cls, changes)
    unhashable = cls._make([[]] * len(fields))
    for _ in range(2):  # refused every time: a failed hash is not kept
        assert outcome(lambda: hash(unhashable)) is TypeError, cls
    rec = cls._make([0] * len(fields))
    for bad in ({"no_such_field": 1}, {fields[0]: 1, "no_such_field": 2}):
        try:
            rec._replace(**bad)
        except TypeError as e:
            assert "no_such_field" in str(e), e
        else:
            raise AssertionError(bad)
    try:
        rec._replace(0)
    except TypeError:
        pass
    else:
        raise AssertionError("positional")
# the installers refuse what they cannot make safe, and a second call changes nothing
Plain = namedtuple("Plain", "a b")
WithDict = type("WithDict", (tuple,), {})
for install in (_record.cache_hash, _record.fast_call):
    for bad in (int, WithDict, 3):
        assert outcome(lambda: install(bad)) is TypeError, (install, bad)
    install(state.Vma)
assert outcome(lambda: _record.fast_call(Plain)) is TypeError  # its __new__ is not new()
_record.cache_hash(Plain)
assert Plain.__basicsize__ == tuple.__basicsize__ + 8 and hash(Plain(1, 2)) == hash((1, 2))
print("ok", len(classes))
"""


def test_compiled_records_replace_as_the_stock_method(built: None) -> None:
    """The compiled form's records take _replace and __new__ from C: same records, same
    refusals, and they pickle and _make as before."""
    assert _on_the_build(_RECORD_CHECK) == ["ok", "10"]


_LIVENESS_CHECK = """
import random, sys
from array import array
sys.path.insert(0, sys.argv[1])
from devdax.model import checker
assert type(checker.cannot_reach_idle).__name__ == "builtin_function_or_method"  # the C one is in use
rng = random.Random(15)
for _ in range(3000):
    n = rng.randint(0, 40)
    m = rng.randint(0, 3 * n) if n else 0
    src = array("i", (rng.randrange(n) for _ in range(m)))
    dst = array("i", (rng.randrange(n) for _ in range(m)))
    idle = bytearray(rng.random() < 0.15 for _ in range(n))
    got = checker.cannot_reach_idle(n, idle, src, dst)
    assert got == checker._cannot_reach_idle(n, idle, src, dst), (n, idle, src, dst, got)
I = lambda *xs: array("i", xs)
for bad in ((2, bytearray(2), I(0), I(2)), (2, bytearray(2), I(-1), I(0)), (3, bytearray(2), I(), I()),
            (2, bytearray(2), I(0), I()), (2, bytearray(2), array("l", [0]), array("l", [1]))):
    try:
        checker.cannot_reach_idle(*bad)
    except ValueError:
        pass
    else:
        raise AssertionError(bad)
print("ok")
"""


def test_compiled_liveness_walk_as_the_python_one(built: None) -> None:
    """teardown_finishes in the compiled form walks the graph in C: the same first stuck state
    as the Python walk on 3,000 random graphs, and a bad edge or buffer is a ValueError."""
    assert _on_the_build(_LIVENESS_CHECK) == ["ok"]
