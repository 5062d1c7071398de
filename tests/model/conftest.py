"""What several model tests share: one exploration per configuration and session.

The profile defaults and the variants are explored by the verdict tests (test_profiles_variants.py)
and again, as the reference, by the compiled form's differential test (test_compiled.py); each
exploration takes seconds, and check() is deterministic, so the second asks the first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from devdax.model.checker import CheckResult, check
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.state import State

Explored = Callable[[Config], tuple[CheckResult, list[State]]]


@functools.cache
def _explored(cfg: Config) -> tuple[CheckResult, list[State]]:
    states: list[State] = []
    return check(Ctx.of(cfg), states=states), states


@pytest.fixture(scope="session")
def explored() -> Explored:
    """check(cfg) and its stored states, computed once per configuration; callers must not change
    what it returns."""
    return _explored
