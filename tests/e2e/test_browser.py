"""The web UI in real headless Chromium (Debian's ``chromium``, driven by Playwright).

Playwright's own browser downloads are never used: ``executable_path`` points at
the system Chromium. Every wait is Playwright's auto-waiting ``expect`` or a
deadline poll; tests keep apart by room and by a unique token in their texts.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from natter import bus, protocol
from natter.config import Settings
from natter.rooms import Room
from tests.e2e.helpers import run_async
from tests.fixtures.natter import NatterUp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 20_000


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, natter_module: NatterUp) -> Iterator[OpenPage]:
    """A page of its own browser context (own storage), signed in, showing a room."""
    contexts: list[BrowserContext] = []
    expect.set_options(timeout=TIMEOUT_MS)

    def open_(nick: str, room: str) -> Page:
        ctx = browser.new_context(base_url=natter_module.url)
        contexts.append(ctx)
        page = ctx.new_page()
        page.goto(f"/#{room}")
        page.get_by_test_id("nick-input").fill(nick)
        page.get_by_test_id("nick-submit").click()
        expect(page.get_by_test_id("nick-dialog")).to_be_hidden()
        expect_connected(page)
        expect(page.get_by_test_id("room-title")).not_to_have_text("Pick a room")
        return page

    yield open_
    for ctx in contexts:
        ctx.close()


def token() -> str:
    return uuid.uuid4().hex[:8]


def expect_connected(page: Page) -> None:
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def say(page: Page, text: str) -> None:
    composer = page.get_by_test_id("composer")
    composer.fill(text)
    composer.press("Enter")
    expect(composer).to_have_value("")


def message(page: Page, text: str) -> Any:
    """The message whose text is exactly ``text``."""
    return page.get_by_test_id("message").filter(
        has=page.get_by_test_id("message-text").get_by_text(text, exact=True)
    )


def shown(page: Page) -> list[tuple[int | None, str, str]]:
    """(seq, state, text) of every message on screen, top to bottom."""
    rows: list[tuple[int | None, str, str]] = page.get_by_test_id("message").evaluate_all(
        """els => els.map(e => [e.dataset.seq ? Number(e.dataset.seq) : null, e.dataset.state,
                               e.querySelector('[data-testid=message-text]').textContent])"""
    )
    return [(seq, state, text) for seq, state, text in rows]


def assert_in_seq_order_once(page: Page) -> None:
    seqs = [seq for seq, state, _ in shown(page) if state == "stored" and seq is not None]
    assert seqs == sorted(set(seqs)), f"stored messages not in strict seq order: {seqs}"


def post(up: NatterUp, room: str, text: str, timeout: float = 20.0) -> int:
    """Store a message through the HTTP API, retrying (same id) past a dying worker."""
    body = {"id": uuid.uuid4().hex, "text": text}
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.post(f"{up.url}/api/rooms/{room}/messages", json=body, timeout=timeout)
            if r.status_code not in (429, 503):
                assert r.status_code == 201, r.text
                return int(r.json()["seq"])
            wait = float(r.headers.get("Retry-After", "0.05"))
        except httpx.TransportError:
            wait = 0.05
        assert time.monotonic() + wait < deadline, f"could not post {text!r}"
        time.sleep(wait)


def test_two_pages_chat_with_each_other(open_page: OpenPage) -> None:
    tok = token()
    alice = open_page("alice", "general")
    bob = open_page("bob", "general")

    say(alice, f"hello bob {tok}")
    mine = message(alice, f"hello bob {tok}")
    expect(mine).to_have_attribute("data-state", "stored")
    expect(mine).to_have_attribute("data-seq", re.compile(r"^\d+$"))
    seen_by_bob = message(bob, f"hello bob {tok}")
    expect(seen_by_bob).to_have_count(1)
    expect(seen_by_bob.get_by_test_id("message-user")).to_have_text("alice")
    assert seen_by_bob.get_attribute("data-seq") == mine.get_attribute("data-seq")

    # Typing is relayed to the others in the room, and not echoed to oneself.
    bob.get_by_test_id("composer").fill("typing…")
    expect(alice.get_by_test_id("typing-indicator")).to_have_text("bob is typing…")
    expect(bob.get_by_test_id("typing-indicator")).to_have_text("")
    say(bob, f"hi alice {tok}")
    expect(message(alice, f"hi alice {tok}")).to_have_count(1)
    expect(alice.get_by_test_id("typing-indicator")).to_have_text("")

    for page in (alice, bob):
        assert_in_seq_order_once(page)
    assert [t for _, _, t in shown(alice) if tok in t] == [t for _, _, t in shown(bob) if tok in t]


def test_reload_shows_history(open_page: OpenPage) -> None:
    tok = token()
    carol = open_page("carol", "random")
    texts = [f"remember {i} {tok}" for i in range(3)]
    for text in texts:
        say(carol, text)
    for text in texts:
        expect(message(carol, text)).to_have_attribute("data-state", "stored")
    before = [row for row in shown(carol) if tok in row[2]]

    carol.reload()  # nickname and room are remembered; history comes with the join
    expect_connected(carol)
    for text in texts:
        expect(message(carol, text)).to_have_count(1)
    assert [row for row in shown(carol) if tok in row[2]] == before
    assert_in_seq_order_once(carol)

    # Someone arriving later sees the same history.
    dave = open_page("dave", "random")
    for text in texts:
        expect(message(dave, text)).to_have_attribute("data-state", "stored")


def test_scroll_back_pages_through_all_history(
    open_page: OpenPage, natter_module: NatterUp
) -> None:
    tok = token()
    seqs = [post(natter_module, "ops", f"old {i} {tok}") for i in range(130)]
    erin = open_page("erin", "ops")
    expect(message(erin, f"old 129 {tok}")).to_have_count(1)
    assert len(shown(erin)) < 130, "a join shows the latest page, not everything"

    # Scrolling to the top fetches older pages until the start of the room.
    start = erin.get_by_test_id("history-start")
    for _ in range(10):
        if start.is_visible():
            break
        count = len(shown(erin))
        erin.get_by_test_id("message-scroller").evaluate("s => { s.scrollTop = 0; }")
        erin.wait_for_function(
            """n => document.querySelectorAll('[data-testid=message]').length > n
                   || !document.querySelector('[data-testid=history-start]').hidden""",
            arg=count,
        )
    expect(start).to_be_visible()
    stored = [seq for seq, state, _ in shown(erin) if state == "stored" and seq is not None]
    assert stored[-1] >= seqs[-1]
    assert stored == list(range(1, stored[-1] + 1)), "every seq exactly once, in order"
    texts = [t for _, _, t in shown(erin) if tok in t]
    assert texts == [f"old {i} {tok}" for i in range(130)]


def publish_bridged(up: NatterUp, room: str, user: str, text: str, source: str) -> int:
    """Store a message the way a bridge does: straight into the room's stream."""

    async def publish() -> int:
        nats_url = ",".join(n["client_url"] for n in up.cluster["nats"])
        nc = await bus.connect(Settings(nats_url=nats_url), "test-bridge")
        try:
            msg_id = uuid.uuid4().hex
            payload = protocol.stored_message(msg_id, user, text, source)
            target = Room.build("default", room, None)
            return (await bus.RoomBus(nc).publish(target, payload, msg_id=msg_id)).seq
        finally:
            await nc.drain()

    return run_async(publish)


def test_bridged_messages_are_marked_and_text_is_never_html(
    open_page: OpenPage, natter_module: NatterUp
) -> None:
    tok = token()
    frank = open_page("frank", "general")
    html = f"<b>not bold</b><img src=x onerror=alert(1)> {tok}"
    say(frank, html)
    mine = message(frank, html)
    expect(mine).to_have_attribute("data-state", "stored")
    expect(mine.locator("b, img")).to_have_count(0)
    expect(mine.get_by_test_id("message-source")).to_have_count(0)

    publish_bridged(natter_module, "general", "streamfan", f"gg from twitch {tok}", "twitch")
    bridged = message(frank, f"gg from twitch {tok}")
    expect(bridged).to_have_attribute("data-source", "twitch")
    expect(bridged.get_by_test_id("message-source")).to_have_text("twitch")
    expect(bridged.get_by_test_id("message-source")).to_be_visible()
    expect(bridged.get_by_test_id("message-user")).to_have_text("streamfan")


def test_too_large_message_is_marked_and_chat_goes_on(open_page: OpenPage) -> None:
    tok = token()
    gina = open_page("gina", "general")
    say(gina, f"{tok} " + "x" * 5000)  # over maxMessageSize (4096), under the frame limit
    failed = gina.locator("[data-testid=message][data-state=failed]")
    expect(failed).to_have_count(1)
    expect(failed).to_have_attribute("data-error", "too_large")
    expect(failed.get_by_test_id("message-error")).to_be_visible()
    say(gina, f"short {tok}")
    expect(message(gina, f"short {tok}")).to_have_attribute("data-state", "stored")
    expect_connected(gina)


def test_killing_the_pages_gateway_worker_loses_nothing(
    open_page: OpenPage, natter_module: NatterUp
) -> None:
    tok = token()
    hank = open_page("hank", "ops")
    ivy = open_page("ivy", "ops")
    before = [f"before {i} {tok}" for i in range(5)]
    for text in before:
        say(ivy, text)
    expect(message(hank, before[-1])).to_have_count(1)

    status = hank.get_by_test_id("connection-status")
    node = int(status.get_attribute("data-node") or "0")
    assert node in natter_module.gateway_pids(), "welcome's node is a gateway worker pid"

    # Offline keeps the page from reconnecting until every "during" message is
    # stored, so they are certainly missed live and must come from the resume.
    hank.context.set_offline(True)
    natter_module.kill_gateway(node)
    expect(status).not_to_have_attribute("data-state", "connected")
    say(hank, f"from hank while down {tok}")
    pending = message(hank, f"from hank while down {tok}")
    expect(pending).to_have_attribute("data-state", "sending")
    during = [f"during {i} {tok}" for i in range(60)]  # more than one history page
    for text in during:
        post(natter_module, "ops", text)
    expect(status).to_have_attribute("data-state", "offline")
    hank.context.set_offline(False)

    expect_connected(hank)
    assert status.get_attribute("data-node") != str(node)
    expect(pending).to_have_attribute("data-state", "stored")
    expect(message(hank, during[-1])).to_have_count(1)
    after = f"after {tok}"
    say(ivy, after)
    expect(message(hank, after)).to_have_count(1)

    assert_in_seq_order_once(hank)
    texts = [t for _, _, t in shown(hank) if tok in t]
    others = [t for t in texts if "from hank" not in t]
    assert others == [*before, *during, after], "nothing missed, nothing twice, in order"
    assert texts.count(f"from hank while down {tok}") == 1
    # The retried send was stored once: ivy sees it once too.
    expect(message(ivy, f"from hank while down {tok}")).to_have_count(1)
