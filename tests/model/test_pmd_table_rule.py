"""A pmd table left in a PUD slot (spec/fault.py first_size, leaves_pmd_table): on a 1G device a
fault below PUD size (after MADV_NOHUGEPAGE) leaves a pmd table that MADV_DONTNEED keeps, so every
later fault of that 1G slot starts at PMD size and SIGBUSes, MADV_HUGEPAGE or not, until munmap
frees the table. Recorded: k37 on 6.1, 6.12 and 7.2. A 2M device keeps no such memory."""

from __future__ import annotations

import pytest

from devdax.scenario.parse import parse
from devdax.scenario.spec_backend import SpecBackend
from devdax.spec import fault
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.geometry import PAGE_SIZE, PMD_SIZE, PUD_SIZE


def test_first_size_and_the_table_a_fault_leaves() -> None:
    c = Ctx.of(Config(profile="modern", align="1G", files=1, vmas=1, cpus=1))
    first = c.cfg.first_fault_bytes
    assert fault.first_size(c, nohuge=False) == first
    assert fault.first_size(c, nohuge=False, pmd_table=True) == min(first, PMD_SIZE)
    assert fault.first_size(c, nohuge=True, pmd_table=True) == PAGE_SIZE
    assert fault.leaves_pmd_table(PAGE_SIZE) and fault.leaves_pmd_table(PMD_SIZE)
    assert not fault.leaves_pmd_table(PUD_SIZE)


def _run(align: str, steps: list[dict[str, object]]) -> list[str]:
    unit = {"1G": "1G", "2M": "2M"}[align]
    sc = parse(
        {
            "format": "devdax-scenario/1",
            "name": "pmd table",
            "profile": "modern",
            "region": {"size": "2G" if align == "1G" else "16M", "align": align},
            "steps": [
                {"op": "open", "dev": 0, "flags": ["O_RDWR"], "as": "f"},
                {
                    "op": "mmap",
                    "fd": "f",
                    "length": unit,
                    "prot": ["PROT_READ", "PROT_WRITE"],
                    "flags": ["MAP_SHARED"],
                    "offset": 0,
                    "as": "m",
                },
                *steps,
            ],
        }
    )
    return SpecBackend().run(sc)[2:]


NOHUGE = {"op": "madvise", "map": "m", "offset": 0, "length": "2M", "advice": "MADV_NOHUGEPAGE"}
HUGE = {"op": "madvise", "map": "m", "offset": 0, "length": "2M", "advice": "MADV_HUGEPAGE"}
TOUCH = {"op": "touch", "map": "m", "offset": 0, "access": "read"}
REMAP = [
    {"op": "munmap", "map": "m", "offset": 0, "length": "1G"},
    {
        "op": "mmap",
        "fd": "f",
        "length": "1G",
        "prot": ["PROT_READ"],
        "flags": ["MAP_SHARED"],
        "offset": 0,
        "as": "m",
    },
]


def test_on_a_1g_device_the_table_outlives_the_advice_until_munmap() -> None:
    whole = {**NOHUGE, "length": "1G"}
    huge = {**HUGE, "length": "1G"}
    zap = {"op": "madvise", "map": "m", "offset": 0, "length": "1G", "advice": "MADV_DONTNEED"}
    got = _run("1G", [TOUCH, zap, whole, TOUCH, huge, TOUCH, *REMAP, TOUCH])
    assert got == ["ok", "ok", "ok", "SIGBUS", "ok", "SIGBUS", "ok", "ok", "ok"]


@pytest.mark.parametrize("align", ["2M"])
def test_a_2m_device_keeps_no_such_memory(align: str) -> None:
    got = _run(align, [NOHUGE, TOUCH, HUGE, TOUCH])
    assert got == ["ok", "SIGBUS", "ok", "ok"]
