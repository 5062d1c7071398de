"""The multi-process frontier (model/parallel.py, model/partition.py) against check(): on small
configurations and on variants with violations (state invariants, step properties, liveness), W =
1, 2, 3 worker processes store the same states in the same order, count the same transitions and
depth, and report the same violations with the same messages and traces. One test runs the Ray
backend on this machine."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest

from devdax import cli
from devdax.model.checker import CheckResult, _Explorer
from devdax.model.parallel import parallel_check
from devdax.model.partition import ORDINALS, Fingerprint
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State
from devdax.spec.variants import VARIANTS, variant_config

CONFIGS: dict[str, Config] = {
    "race-2cpu": Config(profile="v4.10", race=True, cpus=2, faults=2, units=2, files=1, vmas=1),
    "race-3cpu": Config(profile="v4.10", race=True, cpus=3, faults=2, units=2, files=1, vmas=1),
    "v4.10-2files-2vmas-2cpus": Config(files=2, vmas=2, cpus=2),
    "modern-binds1": Config(profile="modern", binds=1),
    # a state invariant, step properties, two at once, and liveness (teardown_finishes)
    **{n: variant_config(VARIANTS[n]) for n in ("M1", "M3", "M5", "M6", "M20")},
}


def sequential(
    c: Ctx, symmetry: bool = True, reduce: bool = True, liveness: bool = True, only: set[str] | None = None
) -> tuple[CheckResult, list[State]]:
    """check(c), with the states it stored, in its order."""
    x = _Explorer(c, symmetry, reduce, liveness, only, True)
    x.explore(None, False, None, 0.0)
    if x.do_live:
        x.liveness()
    x.res.states = len(x.g.states)
    return x.res, list(x.g.states)


def assert_same(a: CheckResult, b: CheckResult) -> None:
    assert (b.states, b.transitions, b.depth, b.complete) == (a.states, a.transitions, a.depth, a.complete)
    assert list(b.violations) == list(a.violations)  # the order check() records them in, too
    for k, v in a.violations.items():
        w = b.violations[k]
        assert (w.invariant.name, w.message, w.trace) == (v.invariant.name, v.message, v.trace)
        assert [repr(s.state) for s in w.trace] == [repr(s.state) for s in v.trace]
    assert b.checked == a.checked


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_parallel_equals_check(name: str, workers: int) -> None:
    c = Ctx.of(CONFIGS[name])
    seq, seq_states = sequential(c)
    states: list[State] = []
    par = parallel_check(c, workers, states=states)
    assert_same(seq, par)
    assert states == seq_states  # the same states, numbered as check() numbers them
    if name in ("M1", "M20"):
        assert par.violations, "the variant's bug is found"


def test_only_and_switches() -> None:
    """check()'s switches reach the workers: one property, no symmetry, no movers reduction."""
    c = Ctx.of(variant_config(VARIANTS["M6"]))
    assert_same(
        sequential(c, only={"removed_region_dead"})[0], parallel_check(c, 2, only={"removed_region_dead"})
    )
    assert_same(sequential(c, symmetry=False)[0], parallel_check(c, 2, symmetry=False))
    assert_same(
        sequential(c, reduce=False, liveness=False)[0], parallel_check(c, 2, reduce=False, liveness=False)
    )


def test_fingerprint_is_the_same_in_every_process() -> None:
    """Python's hash() of a str differs between interpreters (PYTHONHASHSEED); the fingerprint that
    picks a state's owner must not, nor depend on an IntEnum stored as a plain int."""
    c = Ctx.of(CONFIGS["modern-binds1"])
    _, states = sequential(c)
    fp = Fingerprint()
    here = [fp(s) for s in states[:200]]
    code = (
        "from devdax.model.checker import _Explorer\n"
        "from devdax.model.partition import Fingerprint\n"
        "from devdax.spec.config import Config\n"
        "from devdax.spec.ctx import Ctx\n"
        "x = _Explorer(Ctx.of(Config(profile='modern', binds=1)), True, True, True, None, True)\n"
        "x.explore(200, False, None, 0.0)\n"
        "fp = Fingerprint()\n"
        "print(' '.join(str(fp(s)) for s in x.g.states[:200]))\n"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert [int(w) for w in out.stdout.split()] == here
    s = states[-1]
    plain = s._replace(regions=tuple(r._replace(phase=int(r.phase)) for r in s.regions))  # type: ignore[arg-type]
    assert plain == s and fp(plain) == fp(s)


def test_bad_arguments() -> None:
    c = Ctx.of(CONFIGS["race-2cpu"])
    with pytest.raises(ValueError, match="workers"):
        parallel_check(c, 0)
    with pytest.raises(ValueError, match="backend"):
        parallel_check(c, 2, backend="mpi")
    assert ORDINALS > 1000


def test_ray_backend_on_one_machine() -> None:
    """The same partitions as Ray actors, on a local Ray instance of 2 CPUs."""
    ray = pytest.importorskip("ray", reason="the optional extra: pip install -e '.[ray]'")
    c = Ctx.of(variant_config(VARIANTS["M20"]))
    seq, seq_states = sequential(c)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        states: list[State] = []
        assert_same(seq, parallel_check(c, 2, backend="ray", states=states))
        assert states == seq_states
    finally:
        ray.shutdown()


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def _timeless(report: str) -> str:
    return re.sub(r"[0-9.]+ s \([0-9,]+ states/s\), peak RSS [0-9,]+ MB", "", report)


@pytest.mark.parametrize(
    "argv", [["--variant", "M20"], ["--variant", "M1", "--json"], ["--race", "--cpus", "2"]]
)
def test_cli_workers_prints_the_same_report(argv: list[str]) -> None:
    code, out, _ = _run("check", *argv)
    pcode, pout, _ = _run("check", *argv, "--workers", "2")
    assert pcode == code
    if "--json" in argv:
        seq, par = json.loads(out), json.loads(pout)
        for d in (seq, par):
            d.pop("seconds", None), d.pop("peak_rss", None), d.pop("states_per_second", None)
        assert par == seq
    else:
        assert _timeless(pout) == _timeless(out)


@pytest.mark.parametrize(
    "argv",
    [
        ["--workers", "0"],
        ["--workers", "two"],
        ["--backend", "ray"],
        ["--workers", "2", "--backend", "mpi"],
        ["--workers", "2", "--max-states", "10"],
        ["--workers", "2", "--backend", "ray", "--compiled"],
    ],
)
def test_cli_bad_workers_is_one_line_exit_2(argv: list[str]) -> None:
    code, out, err = _run("check", "--variant", "M20", *argv)
    assert code == 2 and out == ""
    assert err.startswith("devdax: error: --") and err.count("\n") == 1


def test_ctrl_c_in_a_partitioned_run_names_the_violations_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during --workers: the coordinator names the properties already broken into the
    CLI's ``found`` as it learns of them (the sequential checker's frame is not there)."""

    def ctrl_c(self: object, states: int, frontier: int, depth: int, seconds: float) -> None:
        if depth >= 6:  # no-synchronize breaks both properties in 4 steps
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.ProgressLine, "__call__", ctrl_c)
    code, out, err = _run("check", "--variant", "no-synchronize", "--workers", "2")
    assert code == 130 and out == ""
    assert "violations found so far: no_entry_after_kill, no_map_of_dead_device (exit 130)" in err
