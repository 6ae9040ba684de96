"""The ChatRoom CRD and natter.rooms.RoomSpec describe the same spec.

The CRD is what the API server validates; RoomSpec is what the reconciler (and
``natter up``) validates. Field names, defaults, enums and bounds must agree, and
anything the CRD accepts RoomSpec must accept too.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from natter.rooms import NAME_RE, RoomSpec, parse_duration, parse_quantity

CRD_PATH = Path(__file__).resolve().parents[2] / "chart/natter/crds/chatrooms.natter.dev.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return doc


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    result: dict[str, Any] = version
    return result


def _root(crd: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _version(crd)["schema"]["openAPIV3Schema"]
    return result


def _spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _root(crd)["properties"]["spec"]
    return result


def _rules(schema: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in schema.get("x-kubernetes-validations", [])]


def _cel_list(schema: dict[str, Any]) -> list[int] | None:
    for rule in _rules(schema):
        match = re.fullmatch(r"self in \[([^\]]*)\]", rule)
        if match:
            return [int(x) for x in match.group(1).split(",")]
    return None


def _model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        return {} if isinstance(value, BaseModel) else value
    return None if info.default is PydanticUndefined else info.default


def _compare(model: type[BaseModel], schema: dict[str, Any], path: str) -> None:
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    assert set(schema["properties"]) == set(fields), path
    for key, info in fields.items():
        where = f"{path}.{key}"
        prop = schema["properties"][key]
        default = _default(info)
        if default is None:
            assert "default" not in prop, where
        else:
            assert prop.get("default") == default, where
        nested = _model(info.annotation)
        if nested is not None:
            assert prop["type"] == "object", where
            _compare(nested, prop, where)
            continue
        if typing.get_origin(info.annotation) is typing.Literal:
            allowed = list(typing.get_args(info.annotation))
            assert (prop.get("enum") or _cel_list(prop)) == allowed, where


def test_spec_fields_defaults_and_enums_match_roomspec(crd: dict[str, Any]) -> None:
    _compare(RoomSpec, _spec_schema(crd), "spec")


def test_schema_defaults_give_roomspec_defaults(crd: dict[str, Any]) -> None:
    def defaults(schema: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, prop in schema.get("properties", {}).items():
            if prop.get("type") == "object" and "default" in prop:
                out[key] = {**prop["default"], **defaults(prop)}
            elif "default" in prop:
                out[key] = prop["default"]
        return out

    assert defaults(_spec_schema(crd)) == RoomSpec.parse({}).to_raw()


def test_bounds_match_roomspec(crd: dict[str, Any]) -> None:
    spec = _spec_schema(crd)["properties"]
    size = RoomSpec.model_fields["max_message_size"].metadata
    ge = next(m.ge for m in size if hasattr(m, "ge"))
    le = next(m.le for m in size if hasattr(m, "le"))
    assert (spec["maxMessageSize"]["minimum"], spec["maxMessageSize"]["maximum"]) == (ge, le)
    assert spec["displayName"]["maxLength"] == 128
    assert spec["topic"]["maxLength"] == 1024
    assert spec["retention"]["properties"]["maxMessages"]["minimum"] == -1


def test_every_field_is_described(crd: dict[str, Any]) -> None:
    missing: list[str] = []

    def walk(schema: dict[str, Any], path: str) -> None:
        for key, prop in schema.get("properties", {}).items():
            if path == "" and key == "metadata":
                continue
            if not prop.get("description"):
                missing.append(f"{path}.{key}")
            walk(prop, f"{path}.{key}")
            if "items" in prop:
                walk(prop["items"], f"{path}.{key}[]")

    walk(_root(crd), "")
    assert missing == []


def test_resource_shape(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "chatrooms.natter.dev"
    assert "room" in crd["spec"]["names"]["shortNames"]
    version = _version(crd)
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Replicas", "Messages", "Leader", "Age"]
    storage = _spec_schema(crd)["properties"]["storage"]
    assert "self == oldSelf" in _rules(storage)


def test_name_rule_is_the_room_name_pattern(crd: dict[str, Any]) -> None:
    (rule,) = _rules(_root(crd))
    match = re.fullmatch(r"self\.metadata\.name\.matches\('(.*)'\)", rule)
    assert match is not None
    assert match.group(1) == NAME_RE.pattern


def _max_age_regex(crd: dict[str, Any]) -> re.Pattern[str]:
    prop = _spec_schema(crd)["properties"]["retention"]["properties"]["maxAge"]
    (rule,) = _rules(prop)
    match = re.search(r"self\.matches\('(.*)'\)", rule)
    assert match is not None and rule.startswith("self == '0' || ")
    return re.compile(match.group(1))


def _crd_accepts_age(regex: re.Pattern[str], value: str) -> bool:
    return value == "0" or regex.fullmatch(value) is not None


def _parses(fn: Any, value: str) -> bool:
    try:
        fn(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("720h", True),
        ("0", True),
        ("1h30m", True),
        ("7d", True),
        ("1.5h", True),
        ("250ms", True),
        ("", False),
        ("forever", False),
        ("10", False),
        ("-1h", False),
        ("1h 30m", False),
        ("h", False),
    ],
)
def test_max_age_rule_examples(crd: dict[str, Any], value: str, valid: bool) -> None:
    assert _crd_accepts_age(_max_age_regex(crd), value) is valid
    assert _parses(parse_duration, value) is valid


@given(st.text(alphabet="0123456789.nuµmshd", max_size=12))
def test_max_age_rule_agrees_with_parse_duration(value: str) -> None:
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    assert _crd_accepts_age(_max_age_regex(crd), value) == _parses(parse_duration, value)


@given(st.text(alphabet="0123456789KMGTikx", max_size=8))
def test_max_bytes_pattern_agrees_with_parse_quantity(value: str) -> None:
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    prop = _spec_schema(crd)["properties"]["retention"]["properties"]["maxBytes"]
    accepted = re.fullmatch(prop["pattern"].strip("^$"), value) is not None
    assert accepted == _parses(parse_quantity, value)
