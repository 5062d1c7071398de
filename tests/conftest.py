"""Markers shared by the whole suite.

``slow`` runs by default (CI runs everything); ``-m "not slow"`` skips the multi-second exhaustive
checks while iterating. ``lint`` runs ruff and mypy as subprocesses; ``-m "not lint"`` skips them
for a quick local loop.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: an exhaustive check that takes seconds; deselect with -m 'not slow'"
    )
    config.addinivalue_line(
        "markers", "lint: ruff and mypy --strict over the tree; deselect with -m 'not lint'"
    )
