"""Hostile message text stays inert in Chromium under the CSP, and the login form works.

A message full of markup and script is stored through the HTTP API, then shown
in the web UI: it must appear as literal text, run nothing, and create no
elements. The page must also run without any Content-Security-Policy violation.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.helpers import run_async
from tests.fixtures.natter import NatterUp, start_up, wait_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 20_000
STDIN = ["--password-stdin"]
HOSTILE = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload="window.__pwned=3">',
    '<a href="javascript:window.__pwned=4">click</a>',
    "{{constructor.constructor('window.__pwned=5')()}} ${window.__pwned=7}",
    '<iframe srcdoc="<script>parent.__pwned=6</script>"></iframe>',
]


def watch(page: Page) -> list[str]:
    """CSP violations and page errors seen by ``page``."""
    seen: list[str] = []
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))
    page.on(
        "console",
        lambda msg: (
            seen.append(f"console: {msg.text}") if "Content Security Policy" in msg.text else None
        ),
    )
    return seen


def test_hostile_message_text_is_rendered_inert(browser: Browser, natter_module: NatterUp) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    tag = uuid.uuid4().hex[:8]
    texts = [f"{tag} {h}" for h in HOSTILE]

    async def post() -> None:
        async with httpx.AsyncClient(base_url=natter_module.url, timeout=10) as http:
            for text in texts:
                resp = await http.post(
                    "/api/rooms/random/messages", json={"text": text, "user": "mallory"}
                )
                assert resp.status_code == 201, resp.text

    run_async(post)
    ctx = browser.new_context(base_url=natter_module.url)
    try:
        page = ctx.new_page()
        problems = watch(page)
        page.goto("/#random")
        page.get_by_test_id("nick-input").fill(f"victim-{tag}")
        page.get_by_test_id("nick-submit").click()
        for text in texts:
            expect(
                page.get_by_test_id("message-text").get_by_text(text, exact=True)
            ).to_be_visible()
        assert page.evaluate("window.__pwned") is None
        scroller = page.get_by_test_id("message-scroller")
        for selector in ("img", "script", "svg", "iframe", "a[href^='javascript']", "b"):
            assert scroller.locator(selector).count() == 0, selector
        assert not problems, problems
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def natter_jwt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatterUp]:
    base: Path = tmp_path_factory.mktemp("natter-jwt")
    users = base / "users.yaml"
    subprocess.run(
        [sys.executable, "-m", "natter", "users", "add", "alice", "--file", str(users), *STDIN],
        input=b"wonderland\n",
        check=True,
    )
    up = start_up(base / "data", "--auth", "jwt", "--users", str(users), gateways=1)
    try:
        run_async(lambda: wait_up(up))
    except BaseException:
        up.stop()
        raise
    yield up
    assert up.stop() == 0


def test_login_form_signs_in_and_chats(browser: Browser, natter_jwt: NatterUp) -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    ctx = browser.new_context(base_url=natter_jwt.url)
    try:
        page = ctx.new_page()
        problems = watch(page)
        page.goto("/#general")
        expect(page.get_by_test_id("login-form")).to_be_visible()
        expect(page.get_by_test_id("nick-form")).to_be_hidden()
        page.get_by_test_id("login-user").fill("alice")
        page.get_by_test_id("login-password").fill("wrong")
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("login-error")).to_be_visible()
        page.get_by_test_id("login-password").fill("wonderland")
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("nick-dialog")).to_be_hidden()
        status = page.get_by_test_id("connection-status")
        expect(status).to_have_attribute("data-state", "connected")
        expect(page.get_by_test_id("whoami")).to_contain_text("alice")
        text = f"signed in {uuid.uuid4().hex[:8]}"
        composer = page.get_by_test_id("composer")
        composer.fill(text)
        composer.press("Enter")
        expect(page.get_by_test_id("message-text").get_by_text(text, exact=True)).to_be_visible()
        assert not [p for p in problems if "401" not in p], problems
    finally:
        ctx.close()
