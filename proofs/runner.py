"""Obligations, their verdicts, and the mypyvy-style checklist ``devdax prove`` prints.

This module knows nothing about Z3: an obligation is a name, a one-line statement, the kernel rule it
comes from, and a ``check`` that returns a :class:`Verdict`. The solver layer (``proofs.smt``) builds
such checks; the lemma and transition-system modules list obligations; the CLI runs and renders them.

Exit status (``exit_status``), the contract CI relies on:

* ``0``: every obligation was proved, or violated exactly as a documented finding of the profile says
  (status FINDING: spec/profiles.py ``findings``, the same rule ``devdax check`` applies);
* ``1``: at least one obligation was violated (a counterexample exists) without a documented finding
  that explains it, or a documented finding is no longer reproduced by any obligation that stands for
  it (the documentation went stale: the same drift rule as ``devdax check``);
* ``3``: nothing was violated but at least one is UNKNOWN (solver ``unknown`` or timeout). An UNKNOWN is
  never counted as proved, so it must fail a pipeline too; 3 keeps it apart from a real violation and
  from 2, which the CLI reserves for usage errors (as ``devdax check`` does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

#: per-obligation solver budget in seconds (the whole of ``devdax prove`` must stay under 60 s)
DEFAULT_TIMEOUT = 20.0

EXIT_PROVED = 0
EXIT_VIOLATED = 1
EXIT_USAGE = 2
EXIT_UNKNOWN = 3


class Status(Enum):
    PROVED = "proved"
    VIOLATED = "violated"
    #: violated, and the profile documents why: the kernel as modelled has this bug (F2, F3, M21 ...).
    #: A finding is a result, not a gap in the proof: its counterexample is the evidence, and the
    #: obligations that state the fix (e.g. fault_phys_aligned_given_offset for F3) are proved.
    FINDING = "finding"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one check concluded. ``counterexample`` is human-readable text (empty when proved); for an
    UNKNOWN it says why (the solver's reason, or the budget that ran out)."""

    status: Status
    seconds: float = 0.0
    counterexample: str = ""

    def timed(self, seconds: float) -> Verdict:
        return Verdict(self.status, seconds, self.counterexample)


@dataclass(frozen=True, slots=True)
class Obligation:
    """One thing to prove. ``goal(timeout)`` does the work; ``check`` times it and turns an exception
    into UNKNOWN, so that a crash in one encoding is reported and never mistaken for a proof."""

    name: str
    statement: str
    source: str
    goal: Callable[[float], Verdict] = field(repr=False)
    #: the key of the profile's documented finding this obligation stands for ("" when none): a
    #: violation is then a FINDING, and a proof of every obligation under one key means the finding
    #: is no longer reproduced (``stale_findings``)
    finding: str = ""
    #: invariants proved together (Ivy's conjunction): each one's step is checked assuming the others
    #: of its ``group`` that are ``assumed``. When an assumed one fails, the others' "ok" holds only
    #: relative to it, and the checklist says so (``relative_groups``)
    group: str = ""
    assumed: bool = False
    #: the spec invariant a profile would document a violation under ("" when none): obligations.py
    #: makes it ``finding`` when the profile does
    serves: str = ""

    def check(self, timeout: float = DEFAULT_TIMEOUT) -> Verdict:
        start = time.perf_counter()
        try:
            verdict = self.goal(timeout)
        except Exception as exc:  # reported as UNKNOWN, never swallowed into "proved"
            verdict = Verdict(Status.UNKNOWN, counterexample=f"internal error: {type(exc).__name__}: {exc}")
        return verdict.timed(time.perf_counter() - start)


@dataclass(frozen=True, slots=True)
class Result:
    obligation: Obligation
    verdict: Verdict


def select(obligations: Sequence[Obligation], only: Iterable[str] = ()) -> list[Obligation]:
    """Keep the obligations named in ``only`` (all when it is empty); an unknown name is a usage error
    that lists the valid ones, so that a typo never silently proves nothing."""
    wanted = list(only)
    if not wanted:
        return list(obligations)
    names = {o.name for o in obligations}
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ValueError(f"no obligation named {', '.join(missing)}; choose from: {', '.join(sorted(names))}")
    return [o for o in obligations if o.name in wanted]


def run(
    obligations: Iterable[Obligation],
    timeout: float = DEFAULT_TIMEOUT,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Check each obligation in order; ``on_result`` sees each result as soon as it exists (the CLI
    prints the checklist line by line, so a slow obligation is visible while it runs)."""
    results: list[Result] = []
    for ob in obligations:
        res = Result(ob, ob.check(timeout))
        results.append(res)
        if on_result is not None:
            on_result(res)
    return results


_WORD = {Status.PROVED: "ok", Status.VIOLATED: "FAIL", Status.FINDING: "finding", Status.UNKNOWN: "UNKNOWN"}


def render_line(res: Result) -> str:
    """``  ok    0.12s  name  statement``, then for FAIL/finding/UNKNOWN the counterexample indented below
    (a finding's counterexample is the evidence a driver author reads, so it is printed too)."""
    v = res.verdict
    line = f"  {_WORD[v.status]:<7} {v.seconds:6.2f}s  {res.obligation.name}  {res.obligation.statement}"
    if v.status is Status.PROVED or not v.counterexample:
        return line
    body = "\n".join("        " + ln for ln in v.counterexample.splitlines())
    return f"{line}\n{body}"


def stale_findings(results: Sequence[Result]) -> list[str]:
    """Documented findings that none of their obligations reproduces any more: every obligation that
    stands for the key was proved. ``devdax check`` fails the run on the same drift ("documented
    finding no longer reproduced"): the spec changed, and spec/profiles.py must say so."""
    keys: dict[str, list[Status]] = {}
    for r in results:
        if r.obligation.finding:
            keys.setdefault(r.obligation.finding, []).append(r.verdict.status)
    return sorted(k for k, seen in keys.items() if all(s is Status.PROVED for s in seen))


def relative_groups(results: Sequence[Result]) -> dict[str, list[str]]:
    """Groups with an assumed member that was not proved, and some other member that was: those
    proofs assumed a claim that fails, so they are not proofs of an invariant of the profile. Only a
    failing run (a variant, v4.7) has them; a documented finding the proof does not assume (the
    lifetime layer leaves those out) does not count."""
    out: dict[str, list[str]] = {}
    for group in dict.fromkeys(r.obligation.group for r in results if r.obligation.group):
        members = [r for r in results if r.obligation.group == group]
        failed = [
            r.obligation.name
            for r in members
            if r.obligation.assumed and r.verdict.status is not Status.PROVED
        ]
        if failed and any(r.verdict.status is Status.PROVED for r in members):
            out[group] = failed
    return out


def count(results: Sequence[Result]) -> dict[Status, int]:
    """How many results have each status (the checklist's total and `devdax all`'s row)."""
    return {s: sum(1 for r in results if r.verdict.status is s) for s in Status}


def render_total(results: Sequence[Result], stale: Sequence[str] = ()) -> str:
    """The last line: ``all ok!`` in mypyvy's words when everything is proved, else the counts; a
    stale documented finding gets a line of its own before it."""
    total = sum(r.verdict.seconds for r in results)
    counts = count(results)
    head = "".join(
        f"documented finding no longer reproduced: {k} (update spec/profiles.py findings)\n" for k in stale
    )
    head += "".join(
        f"note: the {g} invariants are proved together, each assuming the others; "
        f"{', '.join(failed)} failed, so the others' 'ok' holds only relative to "
        f"{'it' if len(failed) == 1 else 'them'}\n"
        for g, failed in relative_groups(results).items()
    )
    if counts[Status.PROVED] == len(results):
        return f"{head}all ok! {len(results)} obligations proved in {total:.2f}s"
    line = (
        f"{counts[Status.PROVED]} proved, {counts[Status.FINDING]} documented "
        f"finding{'' if counts[Status.FINDING] == 1 else 's'}, "
        f"{counts[Status.VIOLATED]} violated, {counts[Status.UNKNOWN]} UNKNOWN "
        f"of {len(results)} obligations in {total:.2f}s"
    )
    if counts[Status.VIOLATED] == counts[Status.UNKNOWN] == 0 and not stale:
        line += ": every violation is a documented finding of the profile"
    return head + line


def render_checklist(results: Sequence[Result], stale: Sequence[str] = ()) -> str:
    return "\n".join([*(render_line(r) for r in results), render_total(results, stale)])


def to_json(results: Sequence[Result]) -> str:
    """``--json``: a list of {name, status, seconds, counterexample} (plus statement, source, and the
    documented finding the obligation stands for, "" when none)."""
    return json.dumps(
        [
            {
                "name": r.obligation.name,
                "status": r.verdict.status.value,
                "seconds": round(r.verdict.seconds, 4),
                "counterexample": r.verdict.counterexample,
                "statement": r.obligation.statement,
                "source": r.obligation.source,
                "finding": r.obligation.finding,
            }
            for r in results
        ],
        indent=2,
    )


def exit_status(results: Sequence[Result], stale: Sequence[str] = ()) -> int:
    """0 all proved or documented findings, 1 any other violation or a stale finding, 3 otherwise if
    any UNKNOWN (see the module docstring)."""
    statuses = {r.verdict.status for r in results}
    if Status.VIOLATED in statuses or stale:
        return EXIT_VIOLATED
    if Status.UNKNOWN in statuses:
        return EXIT_UNKNOWN
    return EXIT_PROVED
