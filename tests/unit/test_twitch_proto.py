"""The Twitch bridge's pure pieces: settings, names, message mapping, relay lines."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from natter.bridges import irc
from natter.bridges._twitch_proto import (
    RecentIds,
    TwitchSettings,
    anonymous_nick,
    backoff_delay,
    chat_line,
    normalize_channel,
    parse_bridge_spec,
    parse_server,
    relay_line,
)

# docs: "Twitch IRC Tags", the PRIVMSG example.
DOCS_PRIVMSG = (
    "@badge-info=;badges=broadcaster/1;client-nonce=997dcf443c31e258c1d32a8da47b6936;"
    "color=#0000FF;display-name=abc;emotes=;first-msg=0;flags=0-6:S.7;"
    "id=eb24e920-8065-492a-8aea-266a00fc5126;mod=0;room-id=713936733;subscriber=0;"
    "tmi-sent-ts=1642786203573;turbo=0;user-id=713936733;user-type= "
    ":abc!abc@abc.tmi.twitch.tv PRIVMSG #xyz :HeyGuys"
)


def test_defaults_are_twitchs_endpoint() -> None:
    cfg = TwitchSettings()
    assert cfg.server == "irc.chat.twitch.tv:6697"
    assert cfg.tls is True
    assert cfg.relay is False
    assert not cfg.authenticated
    assert parse_server(cfg.server, cfg.tls) == ("irc.chat.twitch.tv", 6697)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATTER_TWITCH_OAUTH_TOKEN", "abc123")
    monkeypatch.setenv("NATTER_TWITCH_USERNAME", "MyBot")
    monkeypatch.setenv("NATTER_TWITCH_RELAY", "true")
    monkeypatch.setenv("NATTER_TWITCH_BUFFER_SIZE", "5")
    cfg = TwitchSettings()
    assert cfg.authenticated and cfg.relay and cfg.buffer_size == 5
    assert cfg.username == "mybot"
    assert cfg.password() == "oauth:abc123"
    assert "abc123" not in repr(cfg)  # the token is a secret


def test_oauth_prefix_is_not_doubled() -> None:
    cfg = TwitchSettings(oauth_token="oauth:xyz", username="bot")
    assert cfg.password() == "oauth:xyz"


def test_anonymous_password_and_nick() -> None:
    assert TwitchSettings().password() == "SCHMOOPIIE"
    nick = anonymous_nick(random.Random(1))
    assert nick.startswith("justinfan") and nick[9:].isdigit()


@pytest.mark.parametrize(
    "kwargs",
    [{"oauth_token": "abc"}, {"username": "bot"}, {"oauth_token": "a", "username": "not a login!"}],
)
def test_bad_credentials_are_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        TwitchSettings(**kwargs)


@pytest.mark.parametrize(
    ("server", "tls", "expected"),
    [
        ("irc.chat.twitch.tv", True, ("irc.chat.twitch.tv", 6697)),
        ("irc.chat.twitch.tv", False, ("irc.chat.twitch.tv", 6667)),
        ("127.0.0.1:4000", False, ("127.0.0.1", 4000)),
        ("[::1]:4000", True, ("::1", 4000)),
        ("[::1]", False, ("::1", 6667)),
    ],
)
def test_parse_server(server: str, tls: bool, expected: tuple[str, int]) -> None:
    assert parse_server(server, tls) == expected


@pytest.mark.parametrize("server", ["", ":6697", "host:port", "host:70000", "host:0"])
def test_parse_server_refuses(server: str) -> None:
    with pytest.raises(ValueError):
        parse_server(server, True)


def test_channel_names() -> None:
    assert normalize_channel("#Dallas") == "dallas"
    assert normalize_channel("some_user42") == "some_user42"
    for bad in ("", "#", "two words", "a" * 26, "semi;colon", "#c\r\nQUIT"):
        with pytest.raises(ValueError):
            normalize_channel(bad)
    assert parse_bridge_spec("#Dallas:general") == ("dallas", "general")
    with pytest.raises(ValueError):
        parse_bridge_spec("dallas")


def test_backoff_grows_with_jitter_and_caps() -> None:
    rng = random.Random(7)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)):
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not fixed


def test_chat_line_from_docs_privmsg() -> None:
    line = chat_line(irc.parse(DOCS_PRIVMSG), "xyz")
    assert line is not None
    assert line.msg_id == "eb24e920-8065-492a-8aea-266a00fc5126"
    assert line.login == "abc"
    assert line.doc == {
        "id": "eb24e920-8065-492a-8aea-266a00fc5126",
        "user": "abc",
        "text": "HeyGuys",
        "ts": "2022-01-21T17:30:03.573Z",
        "source": "twitch",
    }


def test_chat_line_user_and_escapes() -> None:
    raw = (
        "@display-name=ロナルド;id=1;tmi-sent-ts=1642719320727 "
        ":ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #dallas :hi there"
    )
    line = chat_line(irc.parse(raw), "dallas")
    assert line is not None and line.doc["user"] == "ロナルド"
    assert line.doc["ts"] == "2022-01-20T22:55:20.727Z"
    # An empty display-name falls back to the login.
    line = chat_line(irc.parse(raw.replace("ロナルド", "")), "dallas")
    assert line is not None and line.doc["user"] == "ronni"


def test_chat_line_action_and_missing_tags() -> None:
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    msg = irc.parse(":ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #dallas :\x01ACTION waves\x01")
    line = chat_line(msg, "dallas", now=now)
    assert line is not None
    assert line.doc["text"] == "waves" and line.doc["action"] is True
    assert line.doc["user"] == "ronni"
    assert line.doc["ts"] == "2024-01-02T03:04:05.000Z"
    assert line.msg_id.startswith("twitch-")  # no id tag: a fresh id


def test_chat_line_ignores_other_lines() -> None:
    assert chat_line(irc.parse(DOCS_PRIVMSG), "other") is None
    assert chat_line(irc.parse("PRIVMSG #xyz :no source"), "xyz") is None
    assert chat_line(irc.parse(":a!a@a PRIVMSG #xyz :   "), "xyz") is None
    assert chat_line(irc.parse(":tmi.twitch.tv CLEARCHAT #xyz :ronni"), "xyz") is None


def test_relay_line_cannot_inject_or_run_commands() -> None:
    line = relay_line("dallas", "alice", "hi\r\nJOIN #evil\0")
    assert line == "PRIVMSG #dallas :<alice> hi JOIN #evil"
    assert irc.parse(line).trailing.startswith("<alice> ")
    assert relay_line("dallas", "bob", "/ban someone").endswith(":<bob> /ban someone")
    long = irc.parse(relay_line("dallas", "bob", "x" * 2000)).trailing
    assert len(long) == 500 and long.endswith("…")
    assert relay_line("d", "evil\r\nQUIT", "x") == "PRIVMSG #d :<evilQUIT> x"


def test_recent_ids_is_a_bounded_lru() -> None:
    ids = RecentIds(2)
    assert not ids.seen("a") and not ids.seen("b")
    assert ids.seen("a")  # refreshes a
    assert not ids.seen("c")  # evicts b
    assert ids.seen("a") and not ids.seen("b")
    assert len(ids) == 2
    off = RecentIds(0)
    assert not off.seen("a") and not off.seen("a")


def test_settings_errors_do_not_leak_the_token() -> None:
    with pytest.raises(ValidationError) as caught:
        TwitchSettings(oauth_token="supersecret")
    assert "supersecret" not in str(caught.value)
