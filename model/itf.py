"""`--json` output: a run's verdict and statistics, with each counterexample in Apalache's ITF.

ITF (the Informal Trace Format, apalache-mc.org/docs/adr/015adr-trace.html) is what TLA+ tooling
reads: {"#meta", "vars", "states": [{"#meta": {...}, var: value, ...}]}. Values: JSON integers up to
2^53, larger ones as {"#bigint": "..."}; sequences as JSON arrays; tuples {"#tup": [...]}; sets
{"#set": [...]}; records as objects. Here the state's slot tuples (regions, devs, files, vmas, cpus)
are sequences indexed by slot, its records (Region, Dev, ...) objects, `entries` a set of records,
and a heterogeneous tuple (Admin.resume) a #tup. The action of each step goes in that state's
#meta, as Apalache does with "action" annotations, with its arguments and outcome so that a trace
can be replayed (model/trace.py) from the JSON alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from devdax.model.checker import CheckResult, Violation
from devdax.model.trace import steps_of
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State
from devdax.spec.symmetry import canonical
from devdax.spec.system import init

JSON = Any
MAX_SAFE = 2**53 - 1


def _is_record(x: object) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def value(x: object) -> JSON:
    """One value in ITF encoding."""
    if isinstance(x, bool) or x is None or isinstance(x, str | float):
        return x
    if isinstance(x, int):
        return x if -MAX_SAFE <= x <= MAX_SAFE else {"#bigint": str(x)}
    if _is_record(x):
        return {k: value(v) for k, v in x._asdict().items()}  # type: ignore[attr-defined]
    if isinstance(x, frozenset | set):
        return {"#set": sorted((value(v) for v in x), key=repr)}
    if isinstance(x, tuple):
        if len({type(v) for v in x}) <= 1:
            return [value(v) for v in x]  # a sequence (of slots, of shapes)
        return {"#tup": [value(v) for v in x]}
    if isinstance(x, list):
        return [value(v) for v in x]
    if isinstance(x, dict):
        return {str(k): value(v) for k, v in x.items()}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: value(getattr(x, f.name)) for f in dataclasses.fields(x)}
    return str(x)


def args_value(args: tuple[object, ...]) -> JSON:
    """Action arguments as a plain JSON array (strings and integers), ready to replay."""
    return [list(a) if isinstance(a, tuple) else a for a in args]


def state_value(s: State, index: int, action: str, args: tuple[object, ...], outcome: str) -> JSON:
    out: dict[str, JSON] = {
        "#meta": {"index": index, "action": action, "args": args_value(args), "outcome": outcome}
    }
    for k in State._fields:
        out[k] = value(getattr(s, k))
    return out


def trace(cfg: Config, v: Violation, source: str) -> JSON:
    """One counterexample as an ITF trace, from the initial state to the bad one."""
    s0 = canonical(init(Ctx.of(cfg)))
    states = [state_value(s0, 0, "init", (), "ok")]
    states += [state_value(st.state, i, st.action, st.args, st.outcome) for i, st in enumerate(v.trace, 1)]
    return {
        "#meta": {
            "format": "ITF",
            "format-description": "https://apalache-mc.org/docs/adr/015adr-trace.html",
            "source": source,
            "description": f"shortest counterexample to {v.invariant.name} ({v.invariant.kind})",
        },
        "vars": list(State._fields),
        "states": states,
    }


def config_value(cfg: Config) -> JSON:
    return value(cfg)


def result_json(
    *,
    verdict: str,
    cfg: Config,
    res: CheckResult,
    profile: str,
    variant: str | None,
    documented: dict[str, str],
    source: str,
    extra: dict[str, JSON] | None = None,
) -> JSON:
    """The object `devdax check --json` prints."""
    out: dict[str, JSON] = {
        "result": verdict,
        "profile": profile,
        "variant": variant,
        "config": config_value(cfg),
        "states": res.states,
        "transitions": res.transitions,
        "depth": res.depth,
        "complete": res.complete,
        "seconds": round(res.seconds, 3),
        "states_per_second": round(res.states_per_second, 1),
        "checked": list(res.checked),
        "violations": [
            {
                "invariant": name,
                "kind": v.invariant.kind,
                "source": v.invariant.source,
                "message": v.message,
                "documented": name in documented,
                "steps": [[a, args_value(b), o] for a, b, o in steps_of(v)],
                "trace": trace(cfg, v, source),
            }
            for name, v in sorted(res.violations.items())
        ],
    }
    if extra:
        out.update(extra)
    return out
