"""End-to-end fixtures: one ``natter up`` per test module (one per test would cost
seconds each; tests keep apart by room and unique text) and the system Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.e2e.helpers import run_async
from tests.fixtures.natter import NatterUp, start_up, wait_up


@pytest.fixture(scope="module")
def natter_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatterUp]:
    """``natter up --gateways 2`` on a free port, shared by the tests of one module."""
    data_dir: Path = tmp_path_factory.mktemp("natter-e2e") / "data"
    # The tests post bursts of history through one user; abuse limits are tested elsewhere.
    limits = {"NATTER_SEND_RATE": "1000", "NATTER_SEND_BURST": "1000"}
    up = start_up(data_dir, gateways=2, env=limits)
    try:
        run_async(lambda: wait_up(up))
    except BaseException:
        up.stop()
        raise
    yield up
    # A clean stop (drained gateways, NATS in lame duck) exits 0.
    assert up.stop() == 0, up.log()[-3000:]


CHROMIUM = os.environ.get("NATTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
