"""Settings for every natter process, read from ``NATTER_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One settings object shared by the gateway, operator, bridges and CLI."""

    model_config = SettingsConfigDict(env_prefix="NATTER_", extra="ignore")

    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="Comma-separated NATS client URLs; the client fails over between them.",
    )
    nats_user: str | None = Field(None, description="NATS user name, when NATS requires one.")
    nats_password: str | None = Field(None, description="NATS password for nats_user.")
    nats_creds: str | None = Field(None, description="Path to a NATS .creds file.")
    nats_connect_timeout: float = Field(2.0, description="Seconds to wait for one NATS connect.")
    namespace: str = Field("default", description="Namespace of the rooms this process serves.")
    auth: Literal["open", "jwt"] = Field(
        "open", description="open: a nickname in hello; jwt: hello must carry a signed token."
    )
    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8080, description="Port the gateway listens on.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: JSON unless stderr is a terminal."
    )
    log_level: str = Field("info", description="Minimum log level.")
    max_frame_bytes: int = Field(
        65536, description="Largest WebSocket frame a client may send; larger closes with 1009."
    )
    history_default: int = Field(50, description="Messages replayed on join without since.")
    history_max: int = Field(1000, description="Largest page a history request may ask for.")
    publish_timeout: float = Field(
        10.0, description="Seconds the gateway keeps retrying a publish before answering unavailable."
    )
    send_queue_max: int = Field(
        2048, description="Frames queued for one slow socket before it is dropped (close 1008)."
    )
    shutdown_grace: float = Field(
        10.0, description="Seconds a gateway spends draining sockets and NATS on shutdown."
    )

    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
