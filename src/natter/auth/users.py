"""Built-in users: a YAML file of names, argon2 password hashes and groups.

``users: [{name, password_hash, groups: []}]`` — the same shape whether it is a
file on disk (``natter users add``) or a Kubernetes Secret mounted as one. The
file is re-read when it changes, so a rotated Secret takes effect without a
restart; removing a user stops their refresh tokens from working.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from natter import logs, protocol
from natter.errors import BadRequest, NatterError

log = logs.get("natter.auth.users")

_HASHER = PasswordHasher()
# Verified when the user does not exist, so a wrong name costs as much as a wrong password.
_DUMMY_HASH = _HASHER.hash("natter-no-such-user")


class UsersFileError(NatterError):
    """The users file is missing or malformed."""

    code = "unavailable"
    http_status = 503


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str
    groups: tuple[str, ...] = field(default_factory=tuple)


def hash_password(password: str) -> str:
    if not password:
        raise BadRequest("the password must not be empty")
    return _HASHER.hash(password)


def parse(data: Any, source: str = "users file") -> dict[str, User]:
    """Users from the parsed YAML document, keyed by name."""
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("users", []), list):
        raise UsersFileError(f"{source}: expected a mapping with a 'users' list")
    users: dict[str, User] = {}
    for i, raw in enumerate(data.get("users") or []):
        if not isinstance(raw, dict):
            raise UsersFileError(f"{source}: users[{i}] must be a mapping")
        name, hashed, groups = raw.get("name"), raw.get("password_hash"), raw.get("groups") or []
        if not isinstance(name, str) or not isinstance(hashed, str):
            raise UsersFileError(f"{source}: users[{i}] needs string 'name' and 'password_hash'")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise UsersFileError(f"{source}: users[{i}].groups must be a list of strings")
        try:
            name = protocol.valid_user(name)
        except BadRequest as exc:
            raise UsersFileError(f"{source}: users[{i}]: {exc.message}") from None
        if name in users:
            raise UsersFileError(f"{source}: user {name!r} appears twice")
        users[name] = User(name, hashed, tuple(groups))
    return users


def dump(users: dict[str, User]) -> str:
    doc = {
        "users": [
            {"name": u.name, "password_hash": u.password_hash, "groups": list(u.groups)}
            for u in sorted(users.values(), key=lambda u: u.name)
        ]
    }
    return yaml.safe_dump(doc, sort_keys=False)


def load_file(path: Path) -> dict[str, User]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsersFileError(f"{path}: not YAML: {exc}") from None
    return parse(data, str(path))


def write_file(path: Path, users: dict[str, User]) -> None:
    """Replace the file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(dump(users))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_user(path: Path, name: str, password: str, groups: list[str] | None = None) -> User:
    """Add or update one user (keeping their groups unless ``groups`` is given)."""
    name = protocol.valid_user(name)
    users = load_file(path)
    old = users.get(name)
    kept = tuple(groups) if groups is not None else (old.groups if old else ())
    users[name] = User(name, hash_password(password), kept)
    write_file(path, users)
    return users[name]


class UserStore:
    """The users file, reloaded when its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}

    def _current(self) -> dict[str, User]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, -1)
        with self._lock:
            if stamp != self._stamp:
                self._users = load_file(self.path)
                self._stamp = stamp
                log.info("users file loaded", path=str(self.path), users=len(self._users))
            return self._users

    def get(self, name: str) -> User | None:
        return self._current().get(name)

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs; ``None`` otherwise (in the same time)."""
        user = self._current().get(name)
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user
