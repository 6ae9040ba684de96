"""Entry point: ``natter operator`` calls :func:`run`."""

from __future__ import annotations

import kopf

from natter import logs
from natter.config import Settings
from natter_operator.handlers import build_registry, make_memo
from natter_operator.settings import OperatorSettings

log = logs.get("natter.operator")


def run(namespace: str | None, all_namespaces: bool, liveness_port: int | None = None) -> None:
    """Run the ChatRoom operator until SIGINT/SIGTERM.

    Watches ``namespace`` (default: ``NATTER_NAMESPACE``), or every namespace when
    ``all_namespaces``. ``/healthz`` is served on all interfaces at ``liveness_port``
    (default: ``NATTER_OPERATOR_LIVENESS_PORT``, 8081); 0 disables it.
    """
    settings = Settings()
    op = OperatorSettings()
    if liveness_port is None:
        liveness_port = op.liveness_port
    logs.setup(settings.log_level, settings.log_format, process="natter-operator")
    watched = None if all_namespaces else (namespace or settings.namespace)
    log.info(
        "operator starting",
        namespace=watched or "*",
        nats=settings.nats_url,
        resync_seconds=op.resync_seconds,
        liveness_port=liveness_port,
    )
    kopf.run(
        registry=build_registry(op),
        memo=make_memo(settings, op),
        standalone=True,
        clusterwide=all_namespaces,
        namespaces=[] if watched is None else [watched],
        liveness_endpoint=(f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None),
    )
