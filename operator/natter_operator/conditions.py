"""ChatRoom status: conditions with observedGeneration, and the patch that updates them.

Pure functions: the handlers compute the status they want and :func:`status_patch`
says what (if anything) must be written, so an unchanged room costs no API call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

READY = "Ready"
SPEC_APPLIED = "SpecApplied"

# Reasons (CamelCase, as Kubernetes conventions ask).
STREAM_READY = "StreamReady"
NO_LEADER = "NoLeader"
NATS_UNAVAILABLE = "NatsUnavailable"
INVALID_SPEC = "InvalidSpec"
SPEC_CONFLICT = "SpecConflict"
APPLIED = "Applied"

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str

    @property
    def ok(self) -> bool:
        return self.status == "True"


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    current: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    generation: int | None,
    *,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """``current`` with each update applied; ``lastTransitionTime`` moves only when the
    status changes. Conditions not updated are kept as they were. Sorted by type."""
    by_type = {str(c["type"]): dict(c) for c in current or () if "type" in c}
    stamp = now or now_rfc3339()
    for cond in updates:
        old = by_type.get(cond.type)
        since = stamp
        if old is not None and old.get("status") == cond.status:
            since = old.get("lastTransitionTime", stamp)
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": since,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[cond.type] = entry
    return [by_type[key] for key in sorted(by_type)]


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)


def status_patch(
    current: Mapping[str, Any] | None,
    updates: Iterable[Condition],
    generation: int | None,
    stream: Mapping[str, Any] | None = None,
    *,
    now: str | None = None,
) -> dict[str, Any]:
    """The merge patch for ``status`` that records ``updates`` (and the stream's state);
    empty when the status already says all of it."""
    current = current or {}
    patch: dict[str, Any] = {}
    conditions = merge_conditions(current.get("conditions"), updates, generation, now=now)
    if conditions != list(current.get("conditions") or []):
        patch["conditions"] = conditions
    if generation is not None and current.get("observedGeneration") != generation:
        patch["observedGeneration"] = generation
    if stream is not None:
        have = dict(current.get("stream") or {})
        # A None value deletes the key in a merge patch (e.g. no leader right now).
        want = {k: v for k, v in stream.items() if v is not None or k in have}
        if any(have.get(k) != v for k, v in want.items()):
            patch["stream"] = want
    return patch
