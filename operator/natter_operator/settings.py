"""Operator-only settings (``NATTER_OPERATOR_*``); shared ones live in ``natter.config``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_LIVENESS_PORT = 8081


class OperatorSettings(BaseSettings):
    """How the operator paces itself; read from ``NATTER_OPERATOR_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="NATTER_OPERATOR_", extra="ignore")

    resync_seconds: float = Field(
        30.0, gt=0, description="Interval of the timer that repairs drift and refreshes status."
    )
    retry_seconds: float = Field(
        2.0, gt=0, description="First delay before retrying a reconcile that failed (NATS away)."
    )
    retry_max_seconds: float = Field(
        60.0, gt=0, description="Longest delay between retries; the delay doubles up to it."
    )
    liveness_port: int = Field(
        DEFAULT_LIVENESS_PORT,
        ge=0,
        le=65535,
        description="Port of the /healthz liveness endpoint (all interfaces); 0 disables it.",
    )
    max_replicas: int | None = Field(
        None, ge=1, description="Cap on stream replicas (e.g. 1 for a one-node NATS); unset: none."
    )
