"""Backend output in the format's shape: one record per step, a summary, the exit status."""

from __future__ import annotations

import json
from collections.abc import Sequence

from devdax.scenario.schema import (
    Scenario,
    allowed_outcomes,
    is_outcome,
)


def check_outcomes(scenario: Scenario, outcomes: Sequence[str]) -> None:
    """Reject a backend result that is not one valid outcome word per step.

    Called on every backend's answer so that a backend bug (a missing step, a made-up word) is
    reported as such and not as a semantic disagreement between backends.
    """
    if len(outcomes) != len(scenario.steps):
        raise ValueError(
            f"scenario {scenario.file}: backend gave {len(outcomes)} outcomes for {len(scenario.steps)} steps"
        )
    for i, (word, step) in enumerate(zip(outcomes, scenario.steps, strict=True)):
        if word not in allowed_outcomes(step):
            raise ValueError(
                f"scenario {scenario.file} step {i}: outcome {word!r} invalid for op {step.op!r}"
            )


def step_record(scenario: Scenario, i: int, op: str, outcome: str) -> dict[str, object]:
    """One output line's object: ``{"scenario", "step", "op", "outcome"}`` as the format doc fixes."""
    if not 0 <= i < len(scenario.steps):
        raise ValueError(f"scenario {scenario.file}: no step {i}")
    if op != scenario.steps[i].op:
        raise ValueError(f"scenario {scenario.file} step {i}: op is {scenario.steps[i].op!r}, not {op!r}")
    if not is_outcome(outcome):
        raise ValueError(f"scenario {scenario.file} step {i}: unknown outcome {outcome!r}")
    return {"scenario": scenario.name, "step": i, "op": op, "outcome": outcome}


def mismatches(scenario: Scenario, outcomes: Sequence[str]) -> list[int]:
    """Indices of steps whose outcome differs from ``expect`` (empty when there is no ``expect``)."""
    if scenario.expect is None:
        return []
    return [i for i, (got, want) in enumerate(zip(outcomes, scenario.expect, strict=True)) if got != want]


def summary_record(scenario: Scenario, outcomes: Sequence[str]) -> dict[str, object]:
    """Per-scenario verdict: ``pass``/``fail`` against ``expect``, or ``unchecked`` without one."""
    bad = mismatches(scenario, outcomes)
    status = "unchecked" if scenario.expect is None else ("fail" if bad else "pass")
    return {
        "scenario": scenario.name,
        "steps": len(scenario.steps),
        "status": status,
        "mismatches": [
            {"step": i, "op": scenario.steps[i].op, "expected": scenario.expect[i], "got": outcomes[i]}
            for i in bad
            if scenario.expect is not None
        ],
    }


def summary_line(results: Sequence[tuple[Scenario, Sequence[str]]]) -> str:
    """The closing line of a run: one JSON object with totals and the names of failing scenarios."""
    records = [summary_record(s, o) for s, o in results]
    summary = {
        "summary": {
            "scenarios": len(records),
            "steps": sum(len(s.steps) for s, _ in results),
            "passed": sum(r["status"] == "pass" for r in records),
            "failed": [r["scenario"] for r in records if r["status"] == "fail"],
            "unchecked": [r["scenario"] for r in records if r["status"] == "unchecked"],
            "mismatched_steps": sum(len(mismatches(s, o)) for s, o in results),
        }
    }
    return json.dumps(summary, sort_keys=True)


def exit_status(results: Sequence[tuple[Scenario, Sequence[str]]]) -> int:
    """1 if any scenario with ``expect`` disagrees with its outcomes, else 0 (format doc, Output)."""
    return 1 if any(mismatches(s, o) for s, o in results) else 0
