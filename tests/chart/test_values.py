"""values.yaml: documented (`## @param` on every value), and values.schema.json
accepts every scenario and rejects bad values before anything is rendered."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest

from tests.chart._helm import CHART, SCENARIOS, helm, load_yaml, values_for

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _paths(value: Any, prefix: str = "") -> list[str]:
    """Every value's dotted path; maps recurse, anything else (lists too) is a leaf."""
    if isinstance(value, dict) and value:
        out = []
        for key, sub in value.items():
            out += _paths(sub, f"{prefix}{key}.")
        return out
    return [prefix.rstrip(".")]


def _documented() -> list[str]:
    text = (CHART / "values.yaml").read_text()
    return re.findall(r"^\s*## @param (\S+) \S", text, re.M)


def test_every_value_has_a_param_comment() -> None:
    documented = set(_documented())
    values = load_yaml(CHART / "values.yaml")
    missing = []
    for path in _paths(values):
        parts = path.split(".")
        # A value is documented by its own @param or one on a map that holds it
        # (e.g. `gateway.resources` documents its requests and limits).
        if not any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)):
            missing.append(path)
    assert not missing, f"values without a `## @param` comment: {missing}"


def test_every_param_comment_names_a_value() -> None:
    values = load_yaml(CHART / "values.yaml")
    for path in _documented():
        node: Any = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"@param {path} names no value"
            node = node[part]
    assert len(_documented()) == len(set(_documented())), "a value is documented twice"


def test_schema_covers_every_value() -> None:
    """Each value's path leads through the schema to a node that constrains it."""
    for path in _paths(load_yaml(CHART / "values.yaml")):
        node = SCHEMA
        for part in path.split("."):
            props = node.get("properties", {})
            if part not in props:
                # Free-form maps (resources, securityContext...) constrain their
                # contents only loosely; they still must say they are objects.
                assert (
                    node.get("type") == "object" and node.get("additionalProperties") is not False
                ), path
                break
            node = props[part]
        assert {"type", "const", "enum"} & set(node), path


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenarios_satisfy_the_schema(scenario: str) -> None:
    jsonschema.validate(values_for(scenario), SCHEMA)


BAD_VALUES = [
    ("auth.mode=basic", "auth.mode"),
    ("nats.replicas=2", "nats.replicas"),
    ("nats.image.pullPolicy=Sometimes", "pullPolicy"),
    ("nats.config.lameDuckDuration=soon", "lameDuckDuration"),
    ("nats.terminationGracePeriodSeconds=10", "terminationGracePeriodSeconds"),
    ("nats.persistence.size=lots", "size"),
    ("gateway.service.type=Ingress", "gateway.service.type"),
    ("gateway.service.nodePort=80", "nodePort"),
    ("gateway.replicas=0", "gateway.replicas"),
    ("gateway.roomNamespace=Not_A_Namespace", "roomNamespace"),
    ("gatway.replicas=3", "gatway"),
    ("operator.scope=galaxy", "operator.scope"),
    ("containerSecurityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
    ("containerSecurityContext.allowPrivilegeEscalation=true", "allowPrivilegeEscalation"),
    ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
    ("bridges.twitch[0].channel=no spaces!", "channel"),
    ("bridges.twitch[0].room=general", "channel"),
    ("nats.config.maxPayload=1", "maxPayload"),
]


@pytest.mark.parametrize(("setting", "mentions"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_schema_rejects_bad_values(setting: str, mentions: str) -> None:
    proc = helm("template", "natter", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0, f"--set {setting} was accepted"
    assert "schema" in proc.stderr and mentions.split(".")[-1] in proc.stderr, proc.stderr
