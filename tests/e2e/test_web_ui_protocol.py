"""The web UI's protocol handling in headless Chromium, against a scripted gateway.

The page is served from ``src/natter/gateway/static`` through Playwright routes
and its WebSocket is answered by :class:`ScriptedGateway` in this process, so a
test can send what a real gateway rarely does on cue: batches, repeats, frames
out of order, an ack before its message, a dropped connection at a chosen
moment. The UI must still show every message once, in seq order, resume with
``since`` and resend unacked messages with their original id.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, WebSocketRoute, expect

import natter.gateway

pytestmark = [pytest.mark.browser]

STATIC = Path(natter.gateway.__file__).parent / "static"
ORIGIN = "http://natter.test"
ROOMS = [
    {"name": "general", "displayName": "General", "topic": "Anything goes", "last_seq": 0},
    {"name": "random", "displayName": "Random", "topic": "Off topic", "last_seq": 0},
]
Frame = dict[str, Any]


def msg(seq: int, user: str = "bob", text: str | None = None, **extra: Any) -> Frame:
    return {
        "type": "message", "room": "general", "seq": seq, "id": f"id-{seq}", "user": user,
        "text": text if text is not None else f"message {seq}",
        "ts": "2025-01-01T12:00:00.000Z", **extra,
    }  # fmt: skip


class ScriptedGateway:
    """Answers the page's WebSocket: welcome on hello, ``on_join`` on join; records the rest."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.sockets: list[WebSocketRoute] = []
        self.received: list[tuple[int, Frame]] = []  # (connection number, frame)
        self.on_join: Callable[[Frame], list[Frame]] = lambda f: [joined(f["room"], 0)]
        self.refuse: set[str] = set()  # nicknames whose hello is refused
        page.route_web_socket(re.compile(r"/ws$"), self._accept)

    def _accept(self, ws: WebSocketRoute) -> None:
        n = len(self.sockets)
        self.sockets.append(ws)
        ws.on_message(lambda raw: self._on_message(n, ws, raw))

    def _on_message(self, n: int, ws: WebSocketRoute, raw: str | bytes) -> None:
        frame: Frame = json.loads(raw)
        self.received.append((n, frame))
        if frame["type"] == "hello":
            if frame["user"] in self.refuse:
                ws.send(json.dumps({"type": "error", "code": "forbidden", "message": "name taken"}))
            else:
                ws.send(json.dumps({"type": "welcome", "user": frame["user"], "node": 4000 + n}))
        elif frame["type"] == "join":
            ws.send(json.dumps(self.on_join(frame)))  # one batch

    def push(self, *frames: Frame, batch: bool = False) -> None:
        ws = self.sockets[-1]
        if batch:
            ws.send(json.dumps(list(frames)))
        else:
            for f in frames:
                ws.send(json.dumps(f))

    def wait_frame(self, match: Callable[[int, Frame], bool], timeout: float = 10.0) -> Frame:
        """The first received frame ``match`` accepts, polling with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            for n, f in self.received:
                if match(n, f):
                    return f
            assert time.monotonic() < deadline, f"no such frame; got {self.received}"
            self.page.wait_for_timeout(20)  # lets Playwright deliver the page's frames


def joined(room: str, last_seq: int) -> Frame:
    return {"type": "joined", "room": room, "last_seq": last_seq}


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    ctx = browser.new_context(base_url=ORIGIN)
    expect.set_options(timeout=10_000)

    def serve(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN).split("#")[0].split("?")[0]
        if path == "/api/rooms":
            route.fulfill(json=ROOMS)
        elif path == "/":
            route.fulfill(path=STATIC / "index.html")
        elif path.startswith("/static/") and (STATIC / path.removeprefix("/static/")).is_file():
            route.fulfill(path=STATIC / path.removeprefix("/static/"))
        else:
            route.fulfill(status=404)

    ctx.route(f"{ORIGIN}/**", serve)
    p = ctx.new_page()
    yield p
    ctx.close()


def start(page: Page, gw: ScriptedGateway, nick: str = "alice", room: str = "general") -> None:
    page.add_init_script(f"localStorage.setItem('natter.nick', {json.dumps(nick)})")
    page.goto(f"/#{room}")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def shown(page: Page) -> list[tuple[int | None, str, str]]:
    rows: list[tuple[int | None, str, str]] = page.get_by_test_id("message").evaluate_all(
        """els => els.map(e => [e.dataset.seq ? Number(e.dataset.seq) : null, e.dataset.state,
                               e.querySelector('[data-testid=message-text]').textContent])"""
    )
    return [(seq, state, text) for seq, state, text in rows]


def say(page: Page, text: str) -> None:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer").press("Enter")


def test_batches_repeats_and_disorder_render_each_message_once_in_seq_order(page: Page) -> None:
    gw = ScriptedGateway(page)
    gw.on_join = lambda f: [joined("general", 5), msg(3), msg(1), msg(2)]
    start(page, gw)
    join = gw.wait_frame(lambda n, f: f["type"] == "join")
    assert join == {"type": "join", "room": "general", "history": 50}
    gw.push(msg(2), msg(5), batch=True)
    gw.push(msg(4), msg(5), msg(1))
    expect(page.get_by_test_id("message")).to_have_count(5)
    assert [seq for seq, _, _ in shown(page)] == [1, 2, 3, 4, 5]
    assert all(state == "stored" for _, state, _ in shown(page))


def test_resume_asks_since_last_seen_and_resends_unacked_with_the_same_id(page: Page) -> None:
    gw = ScriptedGateway(page)
    gw.on_join = lambda f: [joined("general", 3), msg(1), msg(2), msg(3)]
    start(page, gw)
    expect(page.get_by_test_id("message")).to_have_count(3)

    say(page, "are you there?")
    first = gw.wait_frame(lambda n, f: f["type"] == "send")
    mine = page.locator("[data-testid=message][data-state=sending]")
    expect(mine).to_have_count(1)
    gw.push(msg(4, text="from bob"), msg(2))  # a late repeat must not move the resume point
    expect(page.get_by_test_id("message")).to_have_count(5)

    # The connection dies before the ack: the page reconnects by itself...
    gw.on_join = lambda f: [joined("general", 4)]
    gw.sockets[0].close()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    # ...resumes after the last seq it saw (not after its own unacked message)...
    rejoin = gw.wait_frame(lambda n, f: n == 1 and f["type"] == "join")
    assert rejoin == {"type": "join", "room": "general", "since": 4}
    # ...and resends the unacked message with its original id.
    again = gw.wait_frame(lambda n, f: n == 1 and f["type"] == "send")
    assert again == first
    assert page.get_by_test_id("connection-status").get_attribute("data-node") == "4001"

    gw.push({"type": "ack", "id": first["id"], "room": "general", "seq": 5})
    expect(mine).to_have_count(0)
    gw.push(msg(5, user="alice", text="are you there?", id=first["id"]))
    expect(page.get_by_test_id("message")).to_have_count(5)
    assert shown(page) == [(s, "stored", t) for s, t in [
        (1, "message 1"), (2, "message 2"), (3, "message 3"), (4, "from bob"),
        (5, "are you there?"),
    ]]  # fmt: skip


def test_ack_before_message_and_message_before_ack_both_show_once(page: Page) -> None:
    gw = ScriptedGateway(page)
    start(page, gw)
    say(page, "one")
    one = gw.wait_frame(lambda n, f: f.get("text") == "one")
    gw.push({"type": "ack", "id": one["id"], "room": "general", "seq": 1})
    gw.push(msg(1, user="alice", text="one", id=one["id"]))
    say(page, "two")
    two = gw.wait_frame(lambda n, f: f.get("text") == "two")
    gw.push(msg(2, user="alice", text="two", id=two["id"]))
    gw.push({"type": "ack", "id": two["id"], "room": "general", "seq": 2})
    expect(page.locator("[data-testid=message][data-state=stored]")).to_have_count(2)
    assert shown(page) == [(1, "stored", "one"), (2, "stored", "two")]
    for seq in (1, 2):  # the server's timestamp, whichever came first
        stamp = page.locator(f"[data-testid=message][data-seq='{seq}'] [data-testid=message-time]")
        expect(stamp).to_have_attribute("datetime", "2025-01-01T12:00:00.000Z")
    assert one["id"] != two["id"]


def test_errors_mark_the_message_they_refer_to_and_the_rest_unobtrusively(page: Page) -> None:
    gw = ScriptedGateway(page)
    start(page, gw)
    say(page, "far too long")
    sent = gw.wait_frame(lambda n, f: f["type"] == "send")
    gw.push({"type": "error", "code": "too_large", "message": "over 4096 bytes", "ref": sent["id"]})
    failed = page.locator("[data-testid=message][data-state=failed]")
    expect(failed).to_have_attribute("data-error", "too_large")
    expect(failed.get_by_test_id("message-error")).to_contain_text("over 4096 bytes")

    gw.push({"type": "error", "code": "rate_limited", "message": "slow down"})
    expect(page.get_by_test_id("error-toast")).to_contain_text("slow down")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def test_refused_nickname_asks_again(page: Page) -> None:
    gw = ScriptedGateway(page)
    gw.refuse = {"taken"}
    page.goto("/#general")
    page.get_by_test_id("nick-input").fill("taken")
    page.get_by_test_id("nick-submit").click()
    expect(page.get_by_test_id("nick-error")).to_have_text("name taken")
    expect(page.get_by_test_id("nick-dialog")).to_be_visible()
    expect(page.get_by_test_id("login-form")).to_be_hidden()
    page.get_by_test_id("nick-input").fill("free")
    page.get_by_test_id("nick-submit").click()
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")
    expect(page.get_by_test_id("whoami")).to_have_text("free")


def test_typing_unread_and_bridged_messages(page: Page) -> None:
    gw = ScriptedGateway(page)
    gw.on_join = lambda f: [joined(f["room"], 0)]
    start(page, gw)
    page.get_by_test_id("room-random").click()
    gw.wait_frame(lambda n, f: f["type"] == "join" and f["room"] == "random")

    gw.push({"type": "typing", "room": "random", "user": "bob"})
    expect(page.get_by_test_id("typing-indicator")).to_have_text("bob is typing…")
    gw.push({"type": "typing", "room": "random", "user": "alice"})  # oneself: not shown
    expect(page.get_by_test_id("typing-indicator")).to_have_text("bob is typing…")
    page.get_by_test_id("composer").fill("h")
    gw.wait_frame(lambda n, f: f == {"type": "typing", "room": "random"})

    gw.push(msg(1, user="viewer", text="hi from twitch", source="twitch"), msg(2))
    expect(page.get_by_test_id("unread-general")).to_have_text("2")
    page.get_by_test_id("room-general").click()
    expect(page.get_by_test_id("unread-general")).to_have_count(0)
    bridged = page.locator("[data-testid=message][data-source=twitch]")
    expect(bridged.get_by_test_id("message-source")).to_have_text("twitch")
    expect(bridged.get_by_test_id("message-user")).to_have_text("viewer")
