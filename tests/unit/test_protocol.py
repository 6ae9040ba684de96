from __future__ import annotations

import json

import pytest

from natter import protocol
from natter.errors import BadRequest, TooLarge


def test_parse_each_frame_type() -> None:
    assert protocol.parse('{"type":"hello","user":"ann"}') == protocol.Hello("ann", None)
    assert protocol.parse('{"type":"join","room":"general","since":4}') == protocol.Join(
        "general", 4, None
    )
    assert protocol.parse('{"type":"send","room":"r","id":"a1","text":"hi"}') == protocol.Send(
        "r", "a1", "hi"
    )
    assert protocol.parse('{"type":"history","room":"r","before":9,"limit":5}') == protocol.History(
        "r", 9, 5
    )
    assert protocol.parse('{"type":"leave","room":"r"}') == protocol.Leave("r")
    assert protocol.parse('{"type":"typing","room":"r"}') == protocol.Typing("r")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        ('{"room":"r"}', "type"),
        ('{"type":"dance"}', "unknown frame type"),
        ('{"type":"join","room":5}', "string"),
        ('{"type":"join","room":"r","since":true}', "integer"),
        ('{"type":"join","room":"r","since":"3"}', "integer"),
        ('{"type":"history","room":"r","before":0}', "at least 1"),
        ('{"type":"send","room":"r","text":"x","id":"has space"}', "'id'"),
        ('{"type":"send","room":"r","text":"x","id":"a\\r\\nb"}', "'id'"),
        ('{"type":"send","room":"r","text":"x","id":"a\\n"}', "'id'"),
        ('{"type":"join","room":"general\\n"}', "room name"),
        ('{"type":"hello"}', "hello needs"),
        ('{"type":"hello","user":"' + "x" * 40 + '"}', "user names"),
    ],
)
def test_bad_frames_are_bad_requests(raw: str, needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        protocol.parse(raw)


def test_bad_send_keeps_the_client_id_as_ref() -> None:
    with pytest.raises(BadRequest) as caught:
        protocol.parse('{"type":"send","room":"r","id":"m-1"}')
    assert caught.value.ref == "m-1"


def test_message_frame_is_built_from_the_stored_payload() -> None:
    payload = protocol.stored_message("m1", "ann", 'quote " and <b>', source="twitch")
    frame = json.loads(protocol.message_frame("general", 7, payload))
    assert frame["type"] == "message" and frame["seq"] == 7 and frame["room"] == "general"
    assert frame["text"] == 'quote " and <b>' and frame["source"] == "twitch"
    assert frame["ts"].endswith("Z")


def test_a_corrupt_payload_still_yields_a_valid_frame() -> None:
    frame = json.loads(protocol.message_frame("general", 3, b"\xff not json"))
    assert frame["seq"] == 3 and frame["type"] == "message"


def test_errors_and_batches() -> None:
    err = json.loads(protocol.error_frame(TooLarge("too big", ref="m9")))
    assert err == {"type": "error", "code": "too_large", "message": "too big", "ref": "m9"}
    one, two = protocol.encode({"a": 1}), protocol.encode({"b": 2})
    assert protocol.batch([one]) == one
    assert json.loads(protocol.batch([one, two])) == [{"a": 1}, {"b": 2}]
