"""A small mutation run over impl's lifetime code (device.py, file.py, bus.py), judged by the
refinement tests.

mutmut (3.8) runs on a copy of the tree whose devdax/ symlinks are replaced by the files (see
bench/RESULTS.md), but it does not mutate decorated functions, and most lifetime steps carry
icontract contracts. This tool covers every lifetime method, decorated or not, with three operators
over the methods that create, count and release objects (the admin steps, puts/gets, releases,
open/close):

* ``del-call``: an expression statement that is a call (``self._cdev_put()``, ``k.put()``,
  ``self.bus.core.set_alive(...)``) becomes ``pass``;
* ``flip-bool``: ``x = True`` becomes ``x = False`` and vice versa;
* ``swap``: two adjacent simple statements of which one is such a call trade places (the class of
  the wrong teardown orders: a put before the store it should follow, a free before the unmap).

Each mutant is loaded as its module (devdax.impl.device, .file or .bus) in a fresh interpreter and
judged by a fast subset of tests/refinement (lockstep with few examples, the variant and reference
programs, a short trace run) plus the lifetime and robustness tests of tests/impl. Killed = a test
fails; survived = all pass. Usage::

    .venv/bin/python -m tests.refinement.mutants list
    .venv/bin/python -m tests.refinement.mutants run [--limit N] [--seconds S] [--index I,J,...]
        [--no-baseline]
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMPL = os.path.join(ROOT, "impl")
#: the module of each class whose lifetime methods are mutated, in mutant-numbering order
MODULES: dict[str, set[str]] = {"device": {"DaxRegion", "DevDax"}, "file": {"DaxFile"}, "bus": {"DaxBus"}}
SKIP = {
    "__init__",
    "name",
    "alive",
    "released",
    "_log",
    "_warn",
    "_log_fault",
    "read",
    "write",
    "fsync",
    "lseek",
    "fallocate",
    "ioctl",
    "create_region",
    "_spans",
    "_program",
    "close",
    "__enter__",
    "__exit__",
    "_check_no_entries",
    "unreleased_devices",
    "_next_file",
    "_check_open",
    "_need_fd",
    "mmap",
    "_mmap",
    "remove_region",
    "disable",
    "enable",
    "_run",
}
KEEP_BUS = {"open", "_chrdev_lookup"}
#: fastest first: the judge stops at the first failure (-x), so a killed mutant costs little
TESTS = [
    "tests/refinement/test_variants.py",
    "tests/impl/test_dax_lifetime.py",
    "tests/impl/test_dax_robust.py",
    "tests/refinement/test_lockstep.py",
    "tests/refinement/test_trace_validation.py",
]


@dataclass(frozen=True)
class Mutant:
    index: int
    module: str
    line: int
    where: str
    op: str
    text: str


def _is_log(st: ast.stmt) -> bool:
    """A call to the event log or dmesg: moving or deleting it is equivalent for lifetime."""
    if not (isinstance(st, ast.Expr) and isinstance(st.value, ast.Call)):
        return False
    f = st.value.func
    return isinstance(f, ast.Attribute) and f.attr in ("_log", "_warn")


def _is_call(st: ast.stmt) -> bool:
    return isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and not _is_log(st)


def _simple(st: ast.stmt) -> bool:
    """A statement swap may move: an assignment or a call, not a docstring or a log call."""
    return isinstance(st, ast.Assign | ast.AugAssign | ast.AnnAssign) or _is_call(st)


def _swaps(fn: ast.FunctionDef) -> list[ast.stmt]:
    """First statements of adjacent pairs that ``swap`` exchanges: both simple, one a call."""
    out: list[ast.stmt] = []
    for node in ast.walk(fn):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if not isinstance(block, list):
                continue
            for a, b in itertools.pairwise(block):
                if _simple(a) and _simple(b) and (_is_call(a) or _is_call(b)) and ast.dump(a) != ast.dump(b):
                    out.append(a)
    return out


def _targets(tree: ast.Module, classes: set[str]) -> list[tuple[str, ast.AST, str]]:
    out: list[tuple[str, ast.AST, str]] = []
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef) or cls.name not in classes:
            continue
        for fn in cls.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            if cls.name == "DaxBus" and fn.name not in KEEP_BUS:
                continue
            if fn.name in SKIP and not (cls.name == "DaxFile" and fn.name == "close"):
                continue
            where = f"{cls.name}.{fn.name}"
            for node in ast.walk(fn):
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                    f = node.value.func
                    if isinstance(f, ast.Attribute) and f.attr in ("_log", "_warn"):
                        continue  # the event log / dmesg only: equivalent for lifetime
                    out.append(("del-call", node, where))
                elif (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, bool)
                ):
                    out.append(("flip-bool", node, where))
            out += [("swap", st, where) for st in _swaps(fn)]
    return out


def _text(module: str) -> str:
    """The source mutated: a snapshot of impl/ (DEVDAX_MUTANT_SOURCE, a folder) so that edits during
    a run cannot shift the mutant numbering."""
    with open(os.path.join(os.environ.get("DEVDAX_MUTANT_SOURCE", IMPL), module + ".py")) as f:
        return f.read()


def _all_targets() -> list[tuple[str, ast.Module, str, ast.AST, str]]:
    """(module, its tree, op, node, where) for every mutant, numbered module by module."""
    out = []
    for module, classes in MODULES.items():
        tree = ast.parse(_text(module))
        out += [(module, tree, op, n, where) for op, n, where in _targets(tree, classes)]
    return out


def mutants() -> list[Mutant]:
    out = []
    for i, (module, _, op, n, where) in enumerate(_all_targets()):
        text = ast.unparse(n)
        if op == "swap":
            text += " <-> next statement"
        out.append(Mutant(i, module, n.lineno, where, op, text))  # type: ignore[attr-defined]
    return out


def mutated_source(index: int, module: str = "device") -> str:
    """The source of the module of mutant ``index`` with it applied; -1: ``module`` unmutated (the
    judge's baseline run)."""
    if index < 0:
        return ast.unparse(ast.parse(_text(module)))
    _, tree, op, node, _ = _all_targets()[index]

    if op == "swap":
        for parent in ast.walk(tree):
            for name in ("body", "orelse", "finalbody"):
                block = getattr(parent, name, None)
                if isinstance(block, list) and any(x is node for x in block):
                    i = next(k for k, x in enumerate(block) if x is node)
                    block[i], block[i + 1] = block[i + 1], block[i]
                    return ast.unparse(tree)
        raise AssertionError("swap target not found")

    class T(ast.NodeTransformer):
        def visit(self, n: ast.AST) -> ast.AST:
            if n is node:
                if op == "del-call":
                    return ast.copy_location(ast.Pass(), n)
                assert isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
                n.value = ast.copy_location(ast.Constant(not n.value.value), n.value)
                return n
            return super().generic_visit(n)

    return ast.unparse(ast.fix_missing_locations(T().visit(tree)))


def module_of(index: int) -> str:
    return _all_targets()[index][0] if index >= 0 else "device"


# The mutant is written to a file of its own and loaded from there: icontract reads a violated
# condition's source text by line number, which must be the mutant's (ast.unparse renumbers lines).
BOOT = """
import importlib.util, os, sys, tempfile
sys.path.insert(0, {root!r})
from tests.refinement.mutants import mutated_source
path = os.path.join(tempfile.mkdtemp(prefix="devdax_mutant_"), "{module}.py")
with open(path, "w") as f:
    f.write(mutated_source({index}, {module!r}))
import devdax.impl
spec = importlib.util.spec_from_file_location("devdax.impl.{module}", path)
mod = importlib.util.module_from_spec(spec)
sys.modules["devdax.impl.{module}"] = mod
spec.loader.exec_module(mod)
import pytest
sys.exit(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *{tests!r}]))
"""


def run_one(index: int, timeout: float) -> str:
    env = dict(
        os.environ,
        DEVDAX_LOCKSTEP_EXAMPLES="8",
        DEVDAX_LOCKSTEP_STEPS="20",
        DEVDAX_TRACE_RUNS="20",
        DEVDAX_TRACE_SECONDS="40",
    )
    code = BOOT.format(root=ROOT, index=index, module=module_of(index), tests=TESTS)
    try:
        p = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "killed (timeout)"
    if p.returncode == 0:
        return "survived"
    with open(os.path.join(tempfile.gettempdir(), f"devdax_mutant_{index}.log"), "w") as f:
        f.write(p.stdout[-20000:])
    # name the test that failed: a kill under load can be noise, the name says what to rerun
    failed = [ln.split()[1] for ln in p.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    return f"killed by {failed[0].split('/')[-1]}" if failed else "killed"


def main(argv: list[str]) -> int:
    if "DEVDAX_MUTANT_SOURCE" not in os.environ:
        snap = tempfile.mkdtemp(prefix="devdax_mutants_")
        for module in MODULES:
            with (
                open(os.path.join(IMPL, module + ".py")) as f,
                open(os.path.join(snap, module + ".py"), "w") as g,
            ):
                g.write(f.read())
        os.environ["DEVDAX_MUTANT_SOURCE"] = snap
    ms = mutants()
    if argv[:1] == ["list"]:
        for m in ms:
            print(f"{m.index:3} {m.op:9} line {m.line:4} {m.where}: {m.text}")
        return 0
    limit = int(argv[argv.index("--limit") + 1]) if "--limit" in argv else len(ms)
    if "--index" in argv:  # a selection: "3,7,12" (a rerun, or a run on a busy machine)
        pick = {int(x) for x in argv[argv.index("--index") + 1].split(",")}
        ms = [m for m in ms if m.index in pick]
    budget = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 1e9
    t0 = time.monotonic()
    # the judge must pass on the unmutated source first (else every kill is noise); --no-baseline
    # skips it when it passed on the same tree already (minutes on a loaded machine)
    base = "survived" if "--no-baseline" in argv else run_one(-1, timeout=600)
    print(f"baseline (unmutated, through the same loader): {base}", flush=True)
    if base != "survived":
        return 1
    results = []
    for m in ms[:limit]:
        if time.monotonic() - t0 > budget:
            break
        verdict = run_one(m.index, timeout=600)
        results.append({**m.__dict__, "verdict": verdict})
        print(f"{m.index:3} {m.op:9} line {m.line:4} {m.where}: {m.text}\n      {verdict}", flush=True)
    killed = sum(r["verdict"].startswith("killed") for r in results)
    print(json.dumps({"mutants": len(results), "killed": killed, "of": len(ms)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
