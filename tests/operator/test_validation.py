"""The API server itself rejects invalid ChatRooms, with the schema's or CEL's message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.kube import KubeAPI, KubeError
from tests.operator.conftest import room_manifest


@pytest.fixture
def kube(chatroom_crd: KubeAPI, kube_namespace: str) -> Iterator[KubeAPI]:
    yield chatroom_crd
    # No operator runs here, so nothing holds a finalizer; leave the namespace empty.
    chatroom_crd.kubectl("delete", "chatrooms", "--all", "-n", kube_namespace, "--wait=false")


def _rejected(kube: KubeAPI, manifest: dict[str, Any]) -> str:
    with pytest.raises(KubeError) as info:
        kube.apply(manifest)
    return str(info.value)


@pytest.mark.parametrize(
    ("name", "spec", "message"),
    [
        ("two", {"replicas": 2}, "replicas must be 1, 3 or 5"),
        ("ages", {"retention": {"maxAge": "a month"}}, "maxAge must be a duration"),
        ("ages2", {"retention": {"maxAge": "30"}}, "maxAge must be a duration"),
        (
            "bytes",
            {"retention": {"maxBytes": "1GB"}},
            "maxBytes in body should match",
        ),
        ("big", {"maxMessageSize": 10_000_000}, "spec.maxMessageSize in body should be less"),
        ("disk", {"storage": "disk"}, 'Unsupported value: "disk"'),
        ("Bad-Name", {}, "metadata.name must be a DNS-1123 label"),
        ("a" * 64, {}, "metadata.name must be a DNS-1123 label"),
        ("dotted.name", {}, "metadata.name must be a DNS-1123 label"),
    ],
)
def test_invalid_rooms_are_rejected(
    kube: KubeAPI, kube_namespace: str, name: str, spec: dict[str, Any], message: str
) -> None:
    assert message in _rejected(kube, room_manifest(name, kube_namespace, **spec))
    assert kube.get("chatroom", name, kube_namespace) is None


def test_storage_is_immutable(kube: KubeAPI, kube_namespace: str) -> None:
    kube.apply(room_manifest("archive", kube_namespace, storage="file"))
    error = _rejected(kube, room_manifest("archive", kube_namespace, storage="memory"))
    assert "storage is immutable" in error
    obj = kube.get("chatroom", "archive", kube_namespace)
    assert obj is not None and obj["spec"]["storage"] == "file"


def test_defaults_fill_the_spec(kube: KubeAPI, kube_namespace: str) -> None:
    kube.apply(room_manifest("plain", kube_namespace))
    spec = kube.get("chatroom", "plain", kube_namespace)["spec"]  # type: ignore[index]
    assert spec["replicas"] == 3 and spec["storage"] == "file"
    assert spec["retention"] == {"maxAge": "720h", "maxMessages": 1000000, "maxBytes": "1Gi"}
    assert spec["deletionPolicy"] == "Retain" and spec["access"]["visibility"] == "public"
