"""Suite-wide rules.

A skipped test is reported as a failure: every test here, the interop tests with third-party
peers and the failure drills included, must run on a machine set up by ``make setup`` (the README
and .ci/run install everything they need).  A skip would hide a missing peer as a green run.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped tests count as failures in this project: {reason}"
