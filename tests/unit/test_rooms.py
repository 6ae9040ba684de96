from __future__ import annotations

from pathlib import Path

import pytest

from natter.errors import InvalidSpec
from natter.reconcile import stream_config
from natter.rooms import Room, RoomSpec, load_manifests, parse_duration, parse_quantity


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("720h", 720 * 3600), ("1h30m", 5400), ("90s", 90), ("0", 0), ("1.5h", 5400), ("250ms", 0.25)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "10", "10x", "1h 30m", "-5m", "1h30"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1Gi", 1 << 30), ("512Mi", 512 << 20), ("1000", 1000), ("5M", 5_000_000), (7, 7)],
)
def test_parse_quantity(text: str | int, size: int) -> None:
    assert parse_quantity(text) == size


def test_spec_defaults_follow_the_design() -> None:
    spec = RoomSpec.parse({})
    assert spec.replicas == 3 and spec.storage == "file" and spec.deletion_policy == "Retain"
    assert spec.max_message_size == 4096 and spec.access.visibility == "public"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"replicas": 2}, "spec.replicas"),
        ({"storage": "tape"}, "spec.storage"),
        ({"retention": {"maxAge": "forever"}}, "spec.retention.maxAge"),
        ({"retention": {"maxBytes": "lots"}}, "spec.retention.maxBytes"),
        ({"maxMessageSize": 0}, "spec.maxMessageSize"),
        ({"unknownField": 1}, "spec.unknownField"),
        ({"deletionPolicy": "Shred"}, "spec.deletionPolicy"),
    ],
)
def test_invalid_specs_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec, match=field.replace(".", r"\.")):
        RoomSpec.parse(raw)


@pytest.mark.parametrize("name", ["General", "-x", "x-", "a" * 64, "a_b", "a.b", "", "ok\n"])
def test_room_names_are_dns_labels(name: str) -> None:
    with pytest.raises(InvalidSpec, match="DNS-1123"):
        Room.build("default", name, {})


def test_stream_config_maps_the_spec() -> None:
    room = Room.build(
        "team",
        "eng",
        {
            "replicas": 5,
            "storage": "memory",
            "maxMessageSize": 100,
            "retention": {"maxAge": "2h", "maxMessages": 10, "maxBytes": "1Mi"},
        },
    )
    config = stream_config(room)
    assert config.name == "ROOM_team_eng" and config.subjects == ["chat.team.eng.>"]
    assert config.num_replicas == 5 and config.storage.value == "memory"
    assert config.max_age == 7200 and config.max_msgs == 10 and config.max_bytes == 1 << 20
    # Room text limit is in bytes of text; the stream allows for JSON escaping and the envelope.
    assert config.max_msg_size is not None and config.max_msg_size >= 6 * 100
    assert config.duplicate_window == 120
    assert stream_config(room, max_replicas=3).num_replicas == 3


def test_sample_rooms_load(tmp_path: Path) -> None:
    rooms = list(load_manifests(Path(__file__).parents[2] / "k8s" / "rooms"))
    assert {"general", "random", "ops"} <= {r.name for r in rooms}
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(InvalidSpec, match="ChatRoom"):
        list(load_manifests(bad))
