"""A small mutation run over impl/dax.py's lifetime code, judged by the refinement tests.

No mutation tool is installed here (mutmut is not in the environment), so this is a deliberately
simple one: two operators over the methods that create, count and release objects (the admin
steps, puts/gets, releases, open/close):

* ``del-call``: an expression statement that is a call (``self._cdev_put()``, ``k.put()``,
  ``self.bus.core.set_alive(...)``) becomes ``pass``;
* ``flip-bool``: ``x = True`` becomes ``x = False`` and vice versa.

Each mutant is loaded as devdax.impl.dax in a fresh interpreter and judged by a fast subset of
tests/refinement (lockstep with few examples, the reference program, a short trace run). Killed = a
test fails; survived = all pass. Usage::

    .venv/bin/python -m tests.refinement.mutants list
    .venv/bin/python -m tests.refinement.mutants run [--limit N] [--seconds S]
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "impl", "dax.py")
CLASSES = {"DaxRegion", "DevDax", "DaxFile", "DaxBus"}
SKIP = {"__init__", "name", "alive", "released", "_log", "_warn", "_log_fault", "read", "write",
        "fsync", "lseek", "fallocate", "ioctl", "create_region", "_spans", "_program", "close",
        "__enter__", "__exit__", "_check_no_entries", "unreleased_devices", "_next_file", "_check_open",
        "_need_fd", "mmap", "_mmap", "remove_region", "disable", "enable", "_run"}
KEEP_BUS = {"open", "_chrdev_lookup"}
TESTS = ["tests/refinement/test_lockstep.py",
         "tests/refinement/test_variants.py::test_reference_program_passes",
         "tests/refinement/test_trace_validation.py"]


@dataclass(frozen=True)
class Mutant:
    index: int
    line: int
    where: str
    op: str
    text: str


def _targets(tree: ast.Module) -> list[tuple[str, ast.AST, str]]:
    out: list[tuple[str, ast.AST, str]] = []
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef) or cls.name not in CLASSES:
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
                        continue        # the event log / dmesg only: equivalent for lifetime
                    out.append(("del-call", node, where))
                elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                      and isinstance(node.value.value, bool)):
                    out.append(("flip-bool", node, where))
    return out


def _text() -> str:
    """The source mutated: a snapshot (DEVDAX_MUTANT_SOURCE) so that edits during a run cannot
    shift the mutant numbering."""
    with open(os.environ.get("DEVDAX_MUTANT_SOURCE", SOURCE)) as f:
        return f.read()


def mutants() -> list[Mutant]:
    tree = ast.parse(_text())
    return [Mutant(i, n.lineno, where, op, ast.unparse(n))  # type: ignore[attr-defined]
            for i, (op, n, where) in enumerate(_targets(tree))]


def mutated_source(index: int) -> str:
    tree = ast.parse(_text())
    op, node, _ = _targets(tree)[index]

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


BOOT = """
import importlib.util, sys
sys.path.insert(0, {root!r})
from tests.refinement.mutants import mutated_source, SOURCE
import devdax.impl
spec = importlib.util.spec_from_file_location("devdax.impl.dax", SOURCE)
mod = importlib.util.module_from_spec(spec)
sys.modules["devdax.impl.dax"] = mod
exec(compile(mutated_source({index}), SOURCE, "exec"), mod.__dict__)
import pytest
sys.exit(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *{tests!r}]))
"""


def run_one(index: int, timeout: float) -> str:
    env = dict(os.environ, DEVDAX_LOCKSTEP_EXAMPLES="8", DEVDAX_LOCKSTEP_STEPS="20",
               DEVDAX_TRACE_RUNS="40", DEVDAX_TRACE_SECONDS="10")
    code = BOOT.format(root=ROOT, index=index, tests=TESTS)
    try:
        p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed (timeout)"
    return "survived" if p.returncode == 0 else "killed"


def main(argv: list[str]) -> int:
    if "DEVDAX_MUTANT_SOURCE" not in os.environ:
        snap = f"/tmp/devdax_mutants_{os.getpid()}_dax.py"
        with open(SOURCE) as f, open(snap, "w") as g:
            g.write(f.read())
        os.environ["DEVDAX_MUTANT_SOURCE"] = snap
    ms = mutants()
    if argv[:1] == ["list"]:
        for m in ms:
            print(f"{m.index:3} {m.op:9} line {m.line:4} {m.where}: {m.text}")
        return 0
    limit = int(argv[argv.index("--limit") + 1]) if "--limit" in argv else len(ms)
    budget = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 1e9
    t0 = time.monotonic()
    results = []
    for m in ms[:limit]:
        if time.monotonic() - t0 > budget:
            break
        verdict = run_one(m.index, timeout=240)
        results.append({**m.__dict__, "verdict": verdict})
        print(f"{m.index:3} {verdict:16} {m.op:9} line {m.line:4} {m.where}: {m.text}", flush=True)
    killed = sum(r["verdict"].startswith("killed") for r in results)
    print(json.dumps({"mutants": len(results), "killed": killed, "of": len(ms)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
