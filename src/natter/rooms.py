"""Rooms: the ChatRoom spec model and its mapping onto a JetStream stream.

This module is pure (no I/O but reading manifest files): the reconciler in
``natter.reconcile`` turns a :class:`Room` into a stream through ``natter.bus``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from natter.errors import InvalidSpec

API_GROUP = "natter.dev"
API_VERSION = "v1alpha1"
KIND = "ChatRoom"
REGISTRY_BUCKET = "natter-rooms"

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_QUANTITY_RE = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$")
_QUANTITY_UNITS = {
    None: 1,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}
# Worst case a text byte becomes six bytes of JSON (\u00XX); plus id, user, ts, keys.
_ENVELOPE_BYTES = 1024


def parse_duration(value: str) -> float:
    """Seconds in a Go-style duration such as ``720h`` or ``1h30m``; ``0`` is zero."""
    text = value.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{value!r} is not a duration such as 720h, 30m or 1h30m")
    return total


def parse_quantity(value: str | int) -> int:
    """Bytes in a Kubernetes-style quantity such as ``1Gi`` or ``500M``."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a byte quantity cannot be negative")
        return value
    match = _QUANTITY_RE.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a byte quantity such as 1Gi, 512Mi or 1000000")
    return int(match.group(1)) * _QUANTITY_UNITS[match.group(2)]


def validate_name(value: str, what: str = "room name") -> str:
    if not NAME_RE.fullmatch(value):
        raise InvalidSpec(
            f"{what} {value!r} must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class Retention(_Model):
    max_age: str = Field("720h", alias="maxAge", description="Oldest message kept; 0 = forever.")
    max_messages: int = Field(1_000_000, alias="maxMessages", ge=-1)
    max_bytes: str | int = Field("1Gi", alias="maxBytes")

    @field_validator("max_age")
    @classmethod
    def _age(cls, value: str) -> str:
        if parse_duration(value) < 0:
            raise ValueError("maxAge cannot be negative")
        return value

    @field_validator("max_bytes")
    @classmethod
    def _bytes(cls, value: str | int) -> str | int:
        parse_quantity(value)
        return value

    @property
    def max_age_seconds(self) -> float:
        return parse_duration(self.max_age)

    @property
    def max_bytes_value(self) -> int:
        return parse_quantity(self.max_bytes)


class Access(_Model):
    visibility: Literal["public", "private"] = "public"
    members: list[str] = Field(default_factory=list, description="Users allowed in a private room.")
    groups: list[str] = Field(default_factory=list, description="Token groups allowed in.")
    read_only: list[str] = Field(
        default_factory=list, alias="readOnly", description="Members who may read but not send."
    )


class RoomSpec(_Model):
    """``spec`` of a ChatRoom, as DESIGN.md fixes it."""

    display_name: str | None = Field(None, alias="displayName", max_length=128)
    topic: str | None = Field(None, max_length=1024)
    replicas: Literal[1, 3, 5] = 3
    storage: Literal["file", "memory"] = "file"
    retention: Retention = Field(default_factory=Retention)
    max_message_size: int = Field(4096, alias="maxMessageSize", ge=1, le=1_048_576)
    access: Access = Field(default_factory=Access)
    deletion_policy: Literal["Retain", "Delete"] = Field("Retain", alias="deletionPolicy")

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> RoomSpec:
        """Validate a raw spec, raising :class:`InvalidSpec` with every problem named."""
        try:
            return cls.model_validate(raw or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidSpec(f"invalid ChatRoom spec: {problems}") from exc

    def to_raw(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Room(_Model):
    """A named room in a namespace with its validated spec."""

    namespace: str
    name: str
    spec: RoomSpec = Field(default_factory=RoomSpec)

    @classmethod
    def build(cls, namespace: str, name: str, spec: dict[str, Any] | None) -> Room:
        validate_name(namespace, "namespace")
        validate_name(name)
        return cls(namespace=namespace, name=name, spec=RoomSpec.parse(spec))

    @property
    def key(self) -> str:
        return registry_key(self.namespace, self.name)

    @property
    def stream(self) -> str:
        return stream_name(self.namespace, self.name)

    @property
    def subject(self) -> str:
        return msg_subject(self.namespace, self.name)

    @property
    def max_stored_bytes(self) -> int:
        return self.spec.max_message_size * 6 + _ENVELOPE_BYTES

    def registry_value(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "stream": self.stream,
            "spec": self.spec.to_raw(),
        }

    @classmethod
    def from_registry(cls, value: dict[str, Any]) -> Room:
        return cls.build(value["namespace"], value["name"], value.get("spec"))


def stream_name(namespace: str, room: str) -> str:
    # Stream names may not contain '.', '*', '>' or whitespace; '-' is fine.
    return f"ROOM_{namespace}_{room}"


def subjects_filter(namespace: str, room: str) -> str:
    return f"chat.{namespace}.{room}.>"


def msg_subject(namespace: str, room: str) -> str:
    return f"chat.{namespace}.{room}.msg"


def signal_subject(namespace: str, room: str, kind: str) -> str:
    return f"chatx.{namespace}.{room}.{kind}"


def registry_key(namespace: str, room: str) -> str:
    return f"{namespace}.{room}"


def load_manifests(path: Path, namespace: str = "default") -> Iterator[Room]:
    """Yield the ChatRooms in a YAML file or a directory of them (sorted by file name)."""
    files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc:
                continue
            if doc.get("kind") != KIND or doc.get("apiVersion") != f"{API_GROUP}/{API_VERSION}":
                raise InvalidSpec(
                    f"{file}: expected apiVersion {API_GROUP}/{API_VERSION} kind {KIND}"
                )
            meta = doc.get("metadata") or {}
            if "name" not in meta:
                raise InvalidSpec(f"{file}: a ChatRoom needs metadata.name")
            yield Room.build(meta.get("namespace", namespace), meta["name"], doc.get("spec"))
