"""Suite-wide policy: with NATTER_REQUIRE_ALL=1 (CI) every skip is a failure,
except tests marked ``kind`` that need a Docker engine this machine lacks."""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("NATTER_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and item.get_closest_marker("kind") is None:
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"NATTER_REQUIRE_ALL=1 turns this skip into a failure: {reason}"


from tests.fixtures.kube import *  # noqa: E402,F403
from tests.fixtures.nats import nats_client, nats_cluster, settings_for  # noqa: E402,F401
from tests.fixtures.natter import gateways, natter_up  # noqa: E402,F401
