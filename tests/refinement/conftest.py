"""Skip the refinement tests, with the reason, where the emulation's kernel mechanisms are missing
(userfaultfd minor mode on shmem with poison and fork events, x86_64): the same probe as tests/impl."""

from __future__ import annotations

import os

import pytest

from devdax.impl import sys as dsys

_REASON = dsys.uffd_unavailable()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _REASON is None:
        return
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.skip(reason=_REASON))
