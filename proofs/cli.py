"""``devdax prove``: check every obligation of a profile and print the checklist.

    devdax prove [--profile P] [--variant V] [--json] [--timeout S] [--only NAME ...] [--list]
                 [--bmc K [--cpus N] [--faults N] [--units N]]

One line per obligation (``ok``/``FAIL``/``finding``/``UNKNOWN``, seconds, name, statement),
counterexamples indented below their line, then a total; ``--json`` prints a list of {name, status,
seconds, counterexample, statement, source, finding} instead. ``finding`` is a violation the profile
documents (spec/profiles.py), as ``devdax check`` reports it. Exit status: 0 every obligation proved or
a documented finding, 1 another violation or a documented finding no longer reproduced, 2 usage
error, 3 UNKNOWN without violation (see proofs/runner.py). devdax/cli.py dispatches ``prove`` here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from devdax.proofs import runner
from devdax.proofs.obligations import VariantError, obligations_for
from devdax.spec.profiles import DEFAULT_PROFILE, PROFILES

#: bench/RESULTS.md measures BMC to depth 8; 64 is far past any depth that finishes, and refusing
#: more keeps a typo (--bmc 10**20) from spending --timeout on every obligation.
MAX_BMC_DEPTH = 64


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, as everywhere in the CLI, not the usage block above it."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="devdax prove", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help=f"kernel profile (default {DEFAULT_PROFILE})",
    )
    p.add_argument("--variant", default=None, help="a named bug variant of the profile")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of the checklist")
    p.add_argument(
        "--timeout",
        type=float,
        default=runner.DEFAULT_TIMEOUT,
        help=f"solver budget per obligation in seconds (default {runner.DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--only", nargs="+", default=[], metavar="NAME", help="check only these obligations")
    p.add_argument("--list", action="store_true", help="list the obligations and exit")
    p.add_argument(
        "--bmc",
        type=int,
        default=None,
        metavar="K",
        help="also model-check a race configuration to depth K (a violation prints the spec "
        "trace as `devdax check` does)",
    )
    p.add_argument("--cpus", type=int, default=1, help="CPUs of the BMC configuration (default 1)")
    p.add_argument("--faults", type=int, default=1, help="faults per CPU in the BMC configuration")
    p.add_argument("--units", type=int, default=1, help="align units of the BMC device (default 1)")
    return p


def main(argv: Sequence[str]) -> int:
    try:
        args = parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse exits 2 on a usage error, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else runner.EXIT_USAGE
    if (
        args.timeout <= 0
        or (args.bmc is not None and args.bmc < 0)
        or min(args.cpus, args.faults, args.units) < 1
    ):
        print(
            "devdax prove: error: --timeout must be positive; --bmc, --cpus, --faults, --units "
            "non-negative/positive",
            file=sys.stderr,
        )
        return runner.EXIT_USAGE
    if args.bmc is not None and args.bmc > MAX_BMC_DEPTH:
        print(f"devdax prove: error: --bmc: at most {MAX_BMC_DEPTH} steps, got {args.bmc}", file=sys.stderr)
        return runner.EXIT_USAGE
    try:
        obligations = runner.select(
            obligations_for(args.profile, args.variant, args.bmc, args.cpus, args.faults, args.units),
            args.only,
        )
    except (ValueError, VariantError) as exc:
        print(f"devdax prove: error: {exc}", file=sys.stderr)
        return runner.EXIT_USAGE
    if args.list:
        for ob in obligations:
            print(f"{ob.name}  {ob.statement}  [{ob.source}]")
        return runner.EXIT_PROVED
    title = f"devdax prove: profile {args.profile}" + (f", variant {args.variant}" if args.variant else "")
    if args.json:
        results = runner.run(obligations, args.timeout)
        print(runner.to_json(results))
    else:
        print(title)
        results = runner.run(
            obligations, args.timeout, on_result=lambda r: print(runner.render_line(r), flush=True)
        )
    # the drift rule needs every obligation of a finding: a --only selection may hold just a proved one
    stale = [] if args.only else runner.stale_findings(results)
    if not args.json:
        print(runner.render_total(results, stale))
    elif stale:
        print(f"devdax prove: documented finding no longer reproduced: {', '.join(stale)}", file=sys.stderr)
    return runner.exit_status(results, stale)


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except BrokenPipeError:  # `devdax prove | head`: the reader left, not an error
        sys.stderr.close()
        raise SystemExit(0) from None
