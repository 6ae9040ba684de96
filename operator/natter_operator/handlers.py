"""kopf handlers for ChatRoom, registered on a registry built per operator run.

* create / update / resume: one idempotent reconcile (:func:`reconcile`).
* a timer: the same reconcile as drift repair plus a status refresh (:func:`resync`).
* delete (finalizer): honour ``deletionPolicy`` (:func:`finalize`).
* startup / cleanup: the NATS connection in ``memo``; a liveness probe.

NATS away → ``kopf.TemporaryError`` (kopf retries) and Ready=False NatsUnavailable;
a spec that cannot be applied → ``kopf.PermanentError`` after the condition says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from natter import logs
from natter.config import Settings
from natter.errors import Unavailable
from natter_operator import FINALIZER, GROUP, PLURAL, VERSION
from natter_operator import conditions as c
from natter_operator.converge import Event, Outcome, converge, finalize
from natter_operator.link import NatsLink
from natter_operator.settings import OperatorSettings

log = logs.get("natter.operator")
ANNOTATIONS_PREFIX = "natter.dev"


def make_memo(settings: Settings, op: OperatorSettings) -> kopf.Memo:
    """Operator-wide state: the NATS link, settings and one lock per room."""
    return kopf.Memo(link=NatsLink(settings), op=op, locks={})


def _lock(memo: kopf.Memo, uid: str) -> asyncio.Lock:
    locks: dict[str, asyncio.Lock] = memo.locks
    return locks.setdefault(uid, asyncio.Lock())


def backoff(op: OperatorSettings, retry: int) -> float:
    """Delay before retry number ``retry`` (0 first): doubling, capped."""
    return float(min(op.retry_seconds * 2 ** min(retry, 16), op.retry_max_seconds))


def _record(
    outcome: Outcome,
    *,
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    generation: int | None,
) -> None:
    """Write the outcome's status (only what changed) and post its Events.

    A Warning whose reason the conditions already show is not posted again, so a
    long NATS outage makes one event, not one per retry.
    """
    shown = {cond.get("reason") for cond in status.get("conditions") or ()}
    wanted = c.status_patch(status, outcome.conditions, generation, outcome.stream)
    for key, value in wanted.items():
        patch.status[key] = value
    for event in outcome.events:
        if event.type == "Warning" and event.reason in shown:
            continue
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


async def reconcile(
    *,
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    **_: Any,
) -> None:
    """Create, resume and update: make the stream match the spec; record the outcome."""
    op: OperatorSettings = memo.op
    namespace = namespace or "default"  # ChatRoom is namespaced; kopf types it optional
    generation = meta.get("generation")
    async with _lock(memo, str(meta.get("uid"))):
        outcome = await converge(memo.link, namespace, name, spec, max_replicas=op.max_replicas)
    _record(outcome, body=body, status=status, patch=patch, generation=generation)
    log.info(
        "room reconciled",
        room=f"{namespace}.{name}",
        generation=generation,
        ready=outcome.conditions[0].status,
        reason=outcome.conditions[0].reason,
    )
    if outcome.retry:
        raise kopf.TemporaryError(outcome.retry, delay=backoff(op, retry))
    if outcome.permanent:
        raise kopf.PermanentError(outcome.permanent)


async def resync(
    *,
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """The timer: repair drift (stream deleted or changed, registry entry lost) and
    refresh status (leader, replicas, messages, last seq). Never raises: the next
    tick is the retry."""
    generation = meta.get("generation")
    applied = c.find(status.get("conditions"), c.SPEC_APPLIED)
    if applied is None or applied.get("observedGeneration") != generation:
        return  # the change handlers have not finished this generation; they own it
    op: OperatorSettings = memo.op
    async with _lock(memo, str(meta.get("uid"))):
        outcome = await converge(
            memo.link, namespace or "default", name, spec, max_replicas=op.max_replicas, repair=True
        )
    _record(outcome, body=body, status=status, patch=patch, generation=generation)


async def on_delete(
    *,
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    meta: kopf.Meta,
    body: kopf.Body,
    memo: kopf.Memo,
    retry: int,
    **_: Any,
) -> None:
    """The finalizer: keep or remove the stream per deletionPolicy, then let go."""
    op: OperatorSettings = memo.op
    uid = str(meta.get("uid"))
    try:
        async with _lock(memo, uid):
            event = await finalize(memo.link, namespace or "default", name, spec)
    except Unavailable as exc:
        msg = f"NATS is unavailable; deletion waits for it: {exc.message}"
        if retry == 0:  # one event per outage, not one per retry
            kopf.event(body, type="Warning", reason=c.NATS_UNAVAILABLE, message=msg)
        raise kopf.TemporaryError(msg, delay=backoff(op, retry)) from exc
    memo.locks.pop(uid, None)
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    log.info("room finalized", room=f"{namespace}.{name}", reason=event.reason)


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """KUBECONFIG when set (a person's shell, the tests), else the pod's ServiceAccount,
    else ~/.kube/config. kopf's own rudimentary logins, chosen explicitly."""
    if os.environ.get("KUBECONFIG"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


async def on_startup(*, settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)


def configure(settings: kopf.OperatorSettings) -> None:
    """Keep kopf's bookkeeping in natter.dev annotations; post only explicit Events."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATIONS_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATIONS_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.posting.loggers = False
    # Reconnect watches promptly when the API server goes away and comes back.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0


async def on_cleanup(*, memo: kopf.Memo, **_: Any) -> None:
    link: NatsLink = memo.link
    await link.close()


async def probe_nats(*, memo: kopf.Memo, **_: Any) -> bool:
    """Reported on the liveness endpoint; NATS being away does not fail liveness."""
    link: NatsLink = memo.link
    return link.connected


def build_registry(op: OperatorSettings) -> kopf.OperatorRegistry:
    """A fresh registry with every handler; the timer interval comes from ``op``."""
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(on_startup)
    kopf.on.cleanup(registry=registry)(on_cleanup)
    kopf.on.probe(id="nats_connected", registry=registry)(probe_nats)
    kopf.on.resume(*resource, registry=registry)(reconcile)
    kopf.on.create(*resource, registry=registry)(reconcile)
    kopf.on.update(*resource, field="spec", registry=registry)(reconcile)
    kopf.on.delete(*resource, registry=registry)(on_delete)
    kopf.timer(
        *resource,
        registry=registry,
        interval=op.resync_seconds,
        initial_delay=op.resync_seconds,
        idle=None,
    )(resync)
    return registry


__all__ = ["Event", "build_registry", "make_memo"]
