"""pytest plugin (entry point `devdax` in pyproject.toml's pytest11): the `devdax` fixture, for a
driver's own test suite (docs/api.md).

    def test_my_unbind_passes(devdax):
        devdax.assert_passes("my-change.toml")

    def test_the_old_unbind_is_caught(devdax):
        devdax.assert_caught("no_entry_after_kill", variant="no-synchronize")

A failed assertion's message is devdax's own report: the numbered counterexample and a snippet that
replays it. devdax.api is imported only when the fixture is used, so that installing devdax costs
nothing to a test session that does not use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from devdax.api import CheckReport, ProveReport, ScenarioReport


class Devdax:
    """What the fixture gives: devdax.api's calls, and assertions that fail with devdax's text.
    A relative profile or scenario path that does not exist from the working directory is looked up
    beside the test file."""

    def __init__(self, here: Path) -> None:
        self.here = here

    def path(self, name: str | None) -> str | None:
        if name is None or Path(name).exists() or Path(name).is_absolute():
            return name
        beside = self.here / name
        return str(beside) if beside.exists() else name

    def check(self, profile: str | None = None, /, **options: object) -> CheckReport:
        """devdax.api.check: options are check's (variant="M21", files=1, race=True, ...)."""
        from devdax import api

        return api.check(self.path(profile), **options)

    def assert_passes(self, profile: str | None = None, /, **bounds: object) -> CheckReport:
        """The profile's verdict is pass: exactly its documented findings (a file: its base's,
        plus those it adds, minus those it fixes)."""
        report = self.check(profile, **bounds)
        if not report.passed:
            pytest.fail(
                f"devdax check --profile {report.profile}: does not pass\n\n{report.text}", pytrace=False
            )
        return report

    def assert_caught(
        self, invariant: str, profile: str | None = None, /, *, variant: str | None = None, **bounds: object
    ) -> CheckReport:
        """`invariant` is violated: the variant or the changed profile is caught by it."""
        report = self.check(profile, **bounds, **({"variant": variant} if variant else {}))
        if not report.caught(invariant):
            what = f"variant {variant}" if variant else f"profile {report.profile}"
            pytest.fail(f"{what} is not caught by {invariant}\n\n{report.text}", pytrace=False)
        return report

    def assert_proves(self, profile: str | None = None, *, only: Sequence[str] = ()) -> ProveReport:
        from devdax import api

        report = api.prove(self.path(profile), only=only)
        if not report.passed:
            pytest.fail(f"devdax prove --profile {report.profile}: fails\n\n{report.text}", pytrace=False)
        return report

    def assert_scenario(self, path: str, profile: str | None = None) -> ScenarioReport:
        """Every step of the scenario file has its `expect`ed outcome on the spec."""
        from devdax import api

        report = api.run_scenario(self.path(path) or path, self.path(profile))
        if not report.passed:
            pytest.fail(f"devdax scenario run {path}: mismatch\n{report.text}", pytrace=False)
        return report


@pytest.fixture
def devdax(request: pytest.FixtureRequest) -> Devdax:
    """devdax's checks for this test (docs/api.md, "The pytest plugin")."""
    return Devdax(Path(str(request.path)).parent)
