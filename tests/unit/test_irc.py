"""The IRC line parser and formatter, against lines from Twitch's IRC documentation.

Lines marked "docs" are copied from Twitch's developer documentation (the Tags,
Commands and Chat-concepts pages) or from Twitch staff announcements on the
developer forum; the rest exercise the IRCv3 message-tags grammar directly.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from natter.bridges import irc
from natter.bridges.irc import IRCParseError, Message, Source

# docs: "Twitch IRC Tags", the PRIVMSG example.
TAGS_PRIVMSG = (
    "@badge-info=;badges=broadcaster/1;client-nonce=997dcf443c31e258c1d32a8da47b6936;"
    "color=#0000FF;display-name=abc;emotes=;first-msg=0;flags=0-6:S.7;"
    "id=eb24e920-8065-492a-8aea-266a00fc5126;mod=0;room-id=713936733;subscriber=0;"
    "tmi-sent-ts=1642786203573;turbo=0;user-id=713936733;user-type= "
    ":abc!abc@abc.tmi.twitch.tv PRIVMSG #xyz :HeyGuys"
)
# docs: developer-forum announcement of USERNOTICE (escaped spaces in system-msg).
RESUB = (
    "@badges=staff/1,broadcaster/1,turbo/1;color=#008000;display-name=TWITCH_UserName;"
    "emotes=;mod=0;msg-id=resub;msg-param-months=6;room-id=1337;subscriber=1;"
    "system-msg=TWITCH_UserName\\shas\\ssubscribed\\sfor\\s6\\smonths!;login=twitch_username;"
    "turbo=1;user-id=1337;user-type=staff :tmi.twitch.tv USERNOTICE #channel "
    ":Great stream -- keep it up!"
)
# docs: "Twitch IRC Tags", CLEARCHAT with a timeout.
CLEARCHAT_TIMEOUT = (
    "@ban-duration=350;room-id=12345678;target-user-id=87654321;tmi-sent-ts=1642719320727 "
    ":tmi.twitch.tv CLEARCHAT #dallas :ronni"
)


def test_twitch_privmsg_with_tags() -> None:
    msg = irc.parse(TAGS_PRIVMSG)
    assert msg.command == "PRIVMSG"
    assert msg.params == ("#xyz", "HeyGuys")
    assert msg.trailing == "HeyGuys"
    assert msg.source == Source("abc", "abc", "abc.tmi.twitch.tv")
    assert msg.tags["id"] == "eb24e920-8065-492a-8aea-266a00fc5126"
    assert msg.tags["display-name"] == "abc"
    assert msg.tags["badges"] == "broadcaster/1"
    assert msg.tags["flags"] == "0-6:S.7"  # ':' is only special after a backslash
    assert msg.tags["badge-info"] == "" and msg.tags["user-type"] == ""
    assert msg.tags["tmi-sent-ts"] == "1642786203573"
    assert len(msg.tags) == 16


def test_twitch_privmsg_without_tags() -> None:
    # docs: "Twitch IRC Tags", the same message without the tags capability.
    msg = irc.parse(":abc!abc@abc.tmi.twitch.tv PRIVMSG #xyz :HeyGuys\r\n")
    assert msg.tags == {}
    assert msg.source is not None and msg.source.nick == "abc"
    assert msg.params == ("#xyz", "HeyGuys")


def test_escaped_tag_values_are_unescaped() -> None:
    msg = irc.parse(RESUB)
    assert msg.command == "USERNOTICE"
    assert msg.tags["system-msg"] == "TWITCH_UserName has subscribed for 6 months!"
    assert msg.tags["msg-param-months"] == "6"
    assert msg.source == Source("tmi.twitch.tv")
    assert msg.params == ("#channel", "Great stream -- keep it up!")


@pytest.mark.parametrize(
    ("escaped", "value"),
    [
        ("a\\sb", "a b"),
        ("semi\\:colon", "semi;colon"),
        ("back\\\\slash", "back\\slash"),
        ("cr\\rlf\\n", "cr\rlf\n"),
        ("\\s\\:\\\\\\r\\n", " ;\\\r\n"),
        ("unknown\\bescape", "unknownbescape"),  # an unknown escape keeps the character
        ("trailing\\", "trailing"),  # a lone trailing backslash is dropped
        ("\\\\s", "\\s"),  # an escaped backslash followed by 's'
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_tag_value_unescaping(escaped: str, value: str) -> None:
    assert irc.parse(f"@k={escaped} :src PRIVMSG #c :x").tags["k"] == value
    assert irc.unescape_tag_value(escaped) == value


def test_tag_without_value_and_repeated_keys() -> None:
    msg = irc.parse("@flag;k=1;k=2;empty= PING :x")
    assert msg.tags == {"flag": "", "k": "2", "empty": ""}  # the last occurrence wins


@pytest.mark.parametrize(
    ("line", "command", "params"),
    [
        ("PING :tmi.twitch.tv", "PING", ("tmi.twitch.tv",)),  # docs: keepalive
        (":tmi.twitch.tv RECONNECT", "RECONNECT", ()),  # docs: Commands, RECONNECT
        (":tmi.twitch.tv CLEARCHAT #dallas", "CLEARCHAT", ("#dallas",)),  # docs
        (":tmi.twitch.tv CLEARCHAT #dallas :ronni", "CLEARCHAT", ("#dallas", "ronni")),  # docs
        (
            ":tmi.twitch.tv CAP * ACK :twitch.tv/commands twitch.tv/tags",  # docs: capabilities
            "CAP",
            ("*", "ACK", "twitch.tv/commands twitch.tv/tags"),
        ),
        (":tmi.twitch.tv 001 ronni :Welcome, GLHF!", "001", ("ronni", "Welcome, GLHF!")),  # docs
        (":ronni!ronni@ronni.tmi.twitch.tv JOIN #dallas", "JOIN", ("#dallas",)),  # docs
        (
            ":tmi.twitch.tv NOTICE * :Login authentication failed",  # docs: Authenticating
            "NOTICE",
            ("*", "Login authentication failed"),
        ),
        ("privmsg #c :lower-case command", "PRIVMSG", ("#c", "lower-case command")),
        ("PRIVMSG #c ::starts with a colon", "PRIVMSG", ("#c", ":starts with a colon")),
        ("PRIVMSG #c :", "PRIVMSG", ("#c", "")),
        ("PRIVMSG   #c   :spaces  kept ", "PRIVMSG", ("#c", "spaces  kept ")),
        ("CMD a b c", "CMD", ("a", "b", "c")),
    ],
)
def test_commands_and_params(line: str, command: str, params: tuple[str, ...]) -> None:
    msg = irc.parse(line)
    assert msg.command == command
    assert msg.params == params


def test_clearchat_with_ban_duration() -> None:
    msg = irc.parse(CLEARCHAT_TIMEOUT)
    assert msg.command == "CLEARCHAT"
    assert msg.tags["ban-duration"] == "350"
    assert msg.tags["target-user-id"] == "87654321"
    assert msg.params == ("#dallas", "ronni")


def test_action_privmsg_keeps_ctcp_wrapper() -> None:
    msg = irc.parse(":ronni!ronni@ronni.tmi.twitch.tv PRIVMSG #dallas :\x01ACTION waves\x01")
    assert msg.trailing == "\x01ACTION waves\x01"


def test_bytes_are_decoded_as_utf8() -> None:
    msg = irc.parse("@display-name=ロナルド :r!r@r PRIVMSG #c :héllo 👋\r\n".encode())
    assert msg.tags["display-name"] == "ロナルド"
    assert msg.trailing == "héllo 👋"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "\r\n",
        "@only-tags=1",
        "@only-tags=1 ",
        ":only.a.source",
        ":only.a.source ",
        "@a=b :src",
        ":",
        "@",
        "@=novalue PING",
        ": PRIVMSG #c :empty source",
        "PR1VMSG #c :bad command",
        "12 #c :two-digit numeric",
        "1234 #c :four-digit numeric",
        "PRIVMSG\x00 #c :nul",
        "PRIVMSG #c :embedded\rcarriage return",
        "#c PRIVMSG",
        "x" * (irc.MAX_LINE_BYTES + 1),
    ],
)
def test_garbage_is_rejected(line: str) -> None:
    with pytest.raises(IRCParseError):
        irc.parse(line)


def test_invalid_utf8_is_rejected() -> None:
    with pytest.raises(IRCParseError):
        irc.parse(b":a!a@a PRIVMSG #c :\xff\xfe")


# -- formatter -------------------------------------------------------------


def test_format_line() -> None:
    assert irc.format_line("JOIN", "#dallas") == "JOIN #dallas"
    assert irc.format_line("PRIVMSG", "#c", "hello world") == "PRIVMSG #c :hello world"
    assert irc.format_line("PRIVMSG", "#c", ":)") == "PRIVMSG #c ::)"
    assert irc.format_line("PRIVMSG", "#c", "") == "PRIVMSG #c :"
    assert irc.format_line("PONG", "tmi.twitch.tv") == "PONG tmi.twitch.tv"
    assert (
        irc.format_line("PRIVMSG", "#c", "hi", tags={"a": "x y;z\\", "b": ""}, source="n!u@h")
        == "@a=x\\sy\\:z\\\\;b :n!u@h PRIVMSG #c hi"
    )


@pytest.mark.parametrize(
    ("command", "params"),
    [
        ("PRIVMSG", ("#c", "line\r\nJOIN #evil")),
        ("PRIVMSG", ("#c", "nul\0")),
        ("PRIVMSG", ("#a b", "middle param with a space")),
        ("PRIVMSG", ("", "empty middle param")),
        ("PRIVMSG", (":x", "middle param led by a colon")),
        ("BAD COMMAND", ()),
        ("", ()),
    ],
)
def test_format_refuses_unsafe_lines(command: str, params: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        irc.format_line(command, *params)


def test_message_round_trip_of_twitch_line() -> None:
    msg = irc.parse(TAGS_PRIVMSG)
    assert irc.parse(msg.format()) == msg


_key = st.from_regex(r"\A[a-z][a-z0-9-]{0,15}\Z")
_value = st.text(
    st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=30
)
_middle = st.from_regex(r"\A[#a-zA-Z0-9_.!@-]{1,20}\Z")
_last = st.text(
    st.characters(blacklist_characters="\0\r\n", blacklist_categories=("Cs",)), max_size=60
)


@given(
    tags=st.dictionaries(_key, _value, max_size=5),
    middle=st.lists(_middle, max_size=3),
    last=st.one_of(st.none(), _last),
    nick=st.one_of(st.none(), _middle.filter(lambda s: "!" not in s and "@" not in s)),
)
def test_format_then_parse_round_trips(
    tags: dict[str, str], middle: list[str], last: str | None, nick: str | None
) -> None:
    params = (*middle, last) if last is not None else tuple(middle)
    line = irc.format_line("PRIVMSG", *params, tags=tags, source=nick)
    assert "\r" not in line and "\n" not in line
    msg = irc.parse(line)
    assert msg == Message("PRIVMSG", params, tags, Source(nick) if nick else None)


@given(_value)
def test_escape_round_trips(value: str) -> None:
    escaped = irc.escape_tag_value(value)
    assert not any(ch in escaped for ch in "; \r\n")
    assert irc.unescape_tag_value(escaped) == value
