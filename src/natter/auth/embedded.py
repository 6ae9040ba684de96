"""What ``natter up`` adds in jwt mode: NATS users, a token secret and the users file.

``natter up --auth jwt --users FILE`` runs the embedded cluster with one NATS
user per component (``natter.natsauth``), a JWT secret kept in the data
directory (so tokens survive a restart) and the given users file. The
credentials are written to ``<data-dir>/nats-credentials.json`` (mode 0600)
for tools that need to reach NATS directly.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from natter.config import Settings
from natter.natsauth import NatsUsers, bridge_user

CREDENTIALS_FILE = "nats-credentials.json"
SECRET_FILE = "jwt-secret"


def _secret(path: Path) -> str:
    try:
        value = path.read_text().strip()
        if len(value) >= 32:
            return value
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value)
    return value


class UpAuth:
    """Credentials of one ``natter up`` run; inert in open mode without NATS auth."""

    def __init__(
        self,
        data_dir: Path,
        *,
        auth: str,
        users_file: Path | None,
        nats_auth: bool | None,
        namespace: str = "default",
        bridge_rooms: Sequence[str] = (),
    ) -> None:
        if auth == "jwt" and users_file is None:
            raise ValueError("natter up --auth jwt needs --users FILE (natter users add ...)")
        self.auth = auth
        self.namespace = namespace
        self.nats = (
            NatsUsers.generate(namespace, bridge_rooms)
            if (auth == "jwt" if nats_auth is None else nats_auth)
            else None
        )
        self.env: dict[str, str] = {}
        data_dir.mkdir(parents=True, exist_ok=True)
        if auth == "jwt":
            assert users_file is not None
            self.env["NATTER_USERS_FILE"] = str(users_file.resolve())
            self.env["NATTER_JWT_SECRET"] = _secret(data_dir / SECRET_FILE)
        if self.nats is not None:
            self.nats.save(data_dir / CREDENTIALS_FILE)

    @property
    def nats_config(self) -> str:
        return self.nats.render() if self.nats is not None else ""

    def operator_settings(self, nats_url: str) -> Settings:
        if self.nats is None:
            return Settings(nats_url=nats_url)
        return self.nats["operator"].settings(nats_url)

    def gateway_env(self) -> dict[str, str]:
        nats = self.nats["gateway"].env() if self.nats is not None else {}
        return {**self.env, **nats}

    def bridge_env(self, room: str) -> dict[str, str]:
        if self.nats is None:
            return {}
        return self.nats[bridge_user(self.namespace, room)].env()
