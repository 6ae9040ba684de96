"""The operator's pure parts: conditions, status patches, outcomes, layering."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from natter.errors import Unavailable
from natter_operator import conditions as c
from natter_operator.converge import converge, deletion_policy, finalize
from natter_operator.handlers import backoff
from natter_operator.settings import OperatorSettings

OPERATOR_SRC = Path(__file__).resolve().parents[2] / "operator/natter_operator"
ALLOWED = {
    "natter.rooms",
    "natter.bus",
    "natter.reconcile",
    "natter.config",
    "natter.errors",
    "natter.logs",
}

READY = c.Condition(c.READY, "True", c.STREAM_READY, "stream S is led by nats-0")
NOT_READY = c.Condition(c.READY, "False", c.NATS_UNAVAILABLE, "NATS is unavailable")


def test_new_condition_gets_generation_and_transition_time() -> None:
    (cond,) = c.merge_conditions(None, [READY], 4, now="T1")
    assert cond == {
        "type": "Ready",
        "status": "True",
        "reason": "StreamReady",
        "message": READY.message,
        "lastTransitionTime": "T1",
        "observedGeneration": 4,
    }


def test_transition_time_moves_only_when_status_changes() -> None:
    first = c.merge_conditions(None, [READY], 1, now="T1")
    moved = c.Condition(c.READY, "True", c.STREAM_READY, "stream S is led by nats-2")
    same = c.merge_conditions(first, [moved], 2, now="T2")
    assert same[0]["lastTransitionTime"] == "T1"
    assert same[0]["message"] == moved.message and same[0]["observedGeneration"] == 2
    changed = c.merge_conditions(same, [NOT_READY], 2, now="T3")
    assert changed[0]["lastTransitionTime"] == "T3" and changed[0]["status"] == "False"


def test_untouched_conditions_are_kept_and_sorted() -> None:
    applied = c.Condition(c.SPEC_APPLIED, "True", c.APPLIED, "ok")
    both = c.merge_conditions(None, [READY, applied], 1, now="T1")
    after = c.merge_conditions(both, [NOT_READY], 1, now="T2")
    assert [x["type"] for x in after] == ["Ready", "SpecApplied"]
    assert after[1] == both[1]


def test_status_patch_is_empty_when_nothing_changed() -> None:
    stream = {"name": "S", "leader": "nats-0", "replicas": 3, "messages": 0, "lastSeq": 0}
    first = c.status_patch(None, [READY], 1, stream, now="T1")
    assert first["observedGeneration"] == 1 and first["stream"] == stream
    assert c.status_patch(first, [READY], 1, stream, now="T2") == {}


def test_status_patch_removes_a_lost_leader() -> None:
    stream = {"name": "S", "leader": "nats-0", "replicas": 3, "messages": 0, "lastSeq": 0}
    current = c.status_patch(None, [READY], 1, stream, now="T1")
    patch = c.status_patch(current, [READY], 1, {**stream, "leader": None, "replicas": 0})
    assert patch["stream"]["leader"] is None  # merge patch: null deletes the field
    fresh = c.status_patch(None, [READY], 1, {**stream, "leader": None})
    assert "leader" not in fresh["stream"]


class _DownLink:
    calls = 0

    async def admin(self) -> Any:
        self.calls += 1
        raise Unavailable("no servers")


async def test_nats_down_means_retry_and_nats_unavailable() -> None:
    link = _DownLink()
    outcome = await converge(link, "default", "general", {}, repair=False)  # type: ignore[arg-type]
    assert link.calls == 1
    assert outcome.retry and "no servers" in outcome.retry and outcome.permanent is None
    (ready,) = outcome.conditions
    assert (ready.type, ready.status, ready.reason) == ("Ready", "False", "NatsUnavailable")
    assert [e.reason for e in outcome.events] == ["NatsUnavailable"]


async def test_invalid_spec_is_permanent_and_never_touches_nats() -> None:
    link = _DownLink()
    spec = {"replicas": 2}
    outcome = await converge(link, "default", "general", spec)  # type: ignore[arg-type]
    assert link.calls == 0
    assert outcome.permanent and "replicas" in outcome.permanent and outcome.retry is None
    assert {(x.type, x.status, x.reason) for x in outcome.conditions} == {
        ("Ready", "False", "InvalidSpec"),
        ("SpecApplied", "False", "InvalidSpec"),
    }


async def test_finalize_raises_unavailable_for_kopf_to_retry() -> None:
    with pytest.raises(Unavailable):
        await finalize(_DownLink(), "default", "general", {"deletionPolicy": "Delete"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "policy"),
    [
        ({}, "Retain"),
        ({"deletionPolicy": "Delete"}, "Delete"),
        ({"deletionPolicy": "Delete", "replicas": 2}, "Retain"),
        (None, "Retain"),
    ],
)
def test_deletion_policy_defaults_to_retain(spec: dict[str, Any] | None, policy: str) -> None:
    assert deletion_policy(spec) == policy


def test_operator_imports_only_the_core_it_may_use() -> None:
    used: set[str] = set()
    for path in OPERATOR_SRC.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = (
                    [node.module]
                    if node.module != "natter"
                    else [f"natter.{alias.name}" for alias in node.names]
                )
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            used |= {n for n in names if n == "natter" or n.startswith("natter.")}
    assert used <= ALLOWED, used - ALLOWED


def test_importing_the_operator_does_not_load_the_gateway() -> None:
    code = (
        "import sys, natter_operator.main; "
        "print(sorted(m for m in sys.modules if m.startswith('natter.gateway')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_retry_delay_doubles_up_to_the_cap() -> None:
    op = OperatorSettings(retry_seconds=2, retry_max_seconds=30)
    assert [backoff(op, n) for n in range(6)] == [2, 4, 8, 16, 30, 30]
    assert backoff(op, 10_000) == 30
