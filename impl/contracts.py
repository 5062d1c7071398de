"""One switch for every icontract condition of impl/: on in tests, off for benchmarks.

Set ``DEVDAX_CONTRACTS=0`` in the environment before importing devdax.impl.dax (bench/bench_impl.py
does) to build the classes without the checks; icontract reads ``enabled=`` at decoration time.
"""

from __future__ import annotations

import os

ENABLED: bool = os.environ.get("DEVDAX_CONTRACTS", "1") != "0"
