"""Skip the refinement tests, with the reason, where the emulation's kernel mechanisms are missing
(userfaultfd minor mode on shmem with poison and fork events, x86_64): the same probe as tests/impl."""

from __future__ import annotations

import os

import pytest

from devdax.impl import sys as dsys


def _probe() -> str | None:
    if not dsys.ARCH_OK:
        return "impl/ is x86_64 only"
    try:
        fd = dsys.userfaultfd()
    except OSError as e:
        return f"userfaultfd unavailable: {e}"
    try:
        dsys.uffd_api(fd, dsys.UFFD_FEATURE_MINOR_SHMEM | dsys.UFFD_FEATURE_POISON
                      | dsys.UFFD_FEATURE_EVENT_FORK | dsys.UFFD_FEATURE_THREAD_ID)
    except OSError as e:
        return f"userfaultfd lacks minor-shmem/poison/fork: {e}"
    finally:
        os.close(fd)
    return None


_REASON = _probe()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _REASON is None:
        return
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.skip(reason=_REASON))
