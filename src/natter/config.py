"""Settings for every natter process, read from ``NATTER_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
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
    nats_tls_ca: str | None = Field(
        None, description="CA bundle that signs the NATS servers' certificates; enables TLS."
    )
    nats_tls_cert: str | None = Field(
        None, description="Client certificate for NATS mutual TLS (with nats_tls_key)."
    )
    nats_tls_key: str | None = Field(None, description="Private key of nats_tls_cert.")
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
        10.0,
        description="Seconds the gateway keeps retrying a publish before answering unavailable.",
    )
    send_queue_max: int = Field(
        2048, description="Frames queued for one slow socket before it is dropped (close 1008)."
    )
    write_deadline: float = Field(
        15.0,
        description="Seconds a client may leave sent data unread (TCP zero window or no ACKs) "
        "before the kernel aborts its connection (TCP_USER_TIMEOUT); 0 disables.",
    )
    shutdown_grace: float = Field(
        10.0, description="Seconds a gateway spends draining sockets and NATS on shutdown."
    )
    ws_impl: Literal["websockets", "websockets-sansio", "wsproto"] = Field(
        "websockets-sansio",
        description="uvicorn's WebSocket implementation (chosen by bench/REPORT.md measurements).",
    )
    ws_per_message_deflate: bool = Field(
        False,
        description="Accept permessage-deflate. Off: a zlib context per socket costs more memory "
        "than an idle connection's whole budget, and ~200-byte chat frames gain little.",
    )

    # authentication (natter.auth) ------------------------------------------------
    users_file: str | None = Field(
        None, description="YAML users file (users: [{name, password_hash, groups}]) for /api/login."
    )
    jwt_secret: SecretStr | None = Field(
        None, description="HS256 key (32+ bytes) signing natter's own tokens; required for logins."
    )
    jwt_issuer: str = Field("natter", description="iss and aud of natter's own tokens.")
    token_ttl: int = Field(900, ge=30, description="Seconds an access token from /api/login lives.")
    refresh_ttl: int = Field(
        43200, ge=60, description="Seconds a refresh token lives (POST /api/refresh rotates it)."
    )
    oidc_issuer: str | None = Field(
        None, description="Accept RS256 tokens from this OIDC issuer (its iss claim)."
    )
    oidc_jwks_url: str | None = Field(
        None, description="JWKS URL of the OIDC issuer; default from its discovery document."
    )
    oidc_audience: str | None = Field(
        None, description="Required aud of OIDC tokens (the client id); unset skips the check."
    )
    oidc_user_claim: str = Field(
        "preferred_username", description="OIDC claim naming the user (falls back to sub)."
    )
    oidc_groups_claim: str = Field("groups", description="OIDC claim listing the user's groups.")
    oidc_algorithms: str = Field("RS256", description="Comma-separated algorithms OIDC keys use.")
    jwks_cache_seconds: float = Field(
        300.0, description="Seconds JWKS keys are cached; an unknown kid refetches sooner."
    )
    hello_timeout: float = Field(
        10.0, description="Seconds a new socket has to say hello before it is closed (1008)."
    )
    max_failed_hellos: int = Field(
        3, ge=1, description="Refused hellos on one socket before it is closed (1008)."
    )

    # abuse limits (natter.gateway.limits) ----------------------------------------
    send_rate: float = Field(5.0, description="Messages per second one user may send, sustained.")
    send_burst: int = Field(20, ge=1, description="Messages one user may send in a burst.")
    request_rate: float = Field(
        10.0, description="join/history requests per second per user, sustained."
    )
    request_burst: int = Field(40, ge=1, description="join/history requests per user in a burst.")
    login_rate: float = Field(0.2, description="Login attempts per second per client address.")
    login_burst: int = Field(10, ge=1, description="Login attempts per client address in a burst.")
    max_connections_per_ip: int = Field(
        64, ge=0, description="Open WebSockets per client address per process; 0 = unlimited."
    )
    max_rooms_per_connection: int = Field(
        50, ge=1, description="Rooms one WebSocket may have joined at once."
    )

    # hardening (natter.gateway.security) -----------------------------------------
    allowed_origins: str = Field(
        "",
        description="Comma-separated extra Origins allowed for /ws and unsafe HTTP methods "
        "(same-origin is always allowed; '*' allows any).",
    )
    hsts: bool = Field(False, description="Send Strict-Transport-Security (only behind HTTPS).")
    nats_inbox_prefix: str | None = Field(
        None,
        description="NATS reply-subject prefix (default _INBOX); give each NATS user its "
        "own, e.g. _INBOX_gateway, so no user can read another's replies.",
    )

    def nats_servers(self) -> list[str]:
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def inbox_prefix(self) -> str:
        return self.nats_inbox_prefix or "_INBOX"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
