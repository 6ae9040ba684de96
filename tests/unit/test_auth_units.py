"""Unit tests of natter.auth, the abuse limits, room authorization and the Origin policy,
plus property-based fuzzing of the frame parser."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natter import protocol
from natter.auth.tokens import TokenError, TokenSigner
from natter.auth.users import UsersFileError, UserStore, add_user, load_file, parse
from natter.errors import BadRequest, Forbidden, NatterError
from natter.gateway.limits import Buckets, ConnectionCounter, TokenBucket
from natter.gateway.security import OriginPolicy
from natter.gateway.state import Gateway
from natter.rooms import Room

SECRET = "s" * 40


def signer(**kw: int) -> TokenSigner:
    return TokenSigner(
        SECRET, issuer="natter", access_ttl=kw.get("ttl", 60), refresh_ttl=kw.get("rttl", 600)
    )


def test_tokens_round_trip_and_are_typed() -> None:
    s = signer()
    access = s.issue("alice", ["ops"], "access")
    who = s.verify(access.token)
    assert (who.name, who.groups, who.source) == ("alice", frozenset({"ops"}), "natter")
    assert who.expires_at is not None and who.expires_at > time.time()
    with pytest.raises(TokenError):
        s.verify(access.token, "refresh")
    with pytest.raises(TokenError):
        s.verify(s.issue("alice", [], "refresh").token, "access")


def test_tokens_from_other_keys_algorithms_or_issuers_are_refused() -> None:
    s = signer()
    now = int(time.time())
    claims = {"iss": "natter", "aud": "natter", "sub": "a", "typ": "access", "iat": now}
    claims.update({"nbf": now, "exp": now + 60})
    assert s.verify(jwt.encode(claims, SECRET, algorithm="HS256")).name == "a"
    for bad in (
        jwt.encode(claims, "t" * 40, algorithm="HS256"),
        jwt.encode(claims, SECRET, algorithm="HS512"),
        jwt.encode(claims, None, algorithm="none"),
        jwt.encode({**claims, "iss": "x"}, SECRET, algorithm="HS256"),
        jwt.encode({**claims, "aud": "x"}, SECRET, algorithm="HS256"),
        jwt.encode({**claims, "exp": now - 30}, SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "exp"}, SECRET, algorithm="HS256"),
        "",
        "a.b.c",
    ):
        with pytest.raises(TokenError):
            s.verify(bad)


def test_short_secrets_are_rejected() -> None:
    with pytest.raises(ValueError):
        TokenSigner("short", issuer="natter", access_ttl=60, refresh_ttl=60)


def test_users_file_hashes_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    add_user(path, "alice", "pw-1", ["ops"])
    assert "pw-1" not in path.read_text() and "$argon2id$" in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    store = UserStore(path)
    assert store.verify("alice", "pw-1") is not None
    assert store.verify("alice", "wrong") is None
    assert store.verify("nobody", "pw-1") is None
    add_user(path, "alice", "pw-2")  # keeps groups, changes the password
    assert store.verify("alice", "pw-1") is None
    user = store.verify("alice", "pw-2")
    assert user is not None and user.groups == ("ops",)
    assert set(load_file(path)) == {"alice"}


@pytest.mark.parametrize(
    "doc",
    [
        {"users": "x"},
        {"users": [{"name": "a"}]},
        {"users": [{"name": "a", "password_hash": "h", "groups": "g"}]},
        {"users": [{"name": "a/b", "password_hash": "h"}]},
        {"users": [{"name": "a", "password_hash": "h"}, {"name": "a", "password_hash": "h"}]},
        ["x"],
    ],
)
def test_malformed_users_files_are_errors(doc: object) -> None:
    with pytest.raises(UsersFileError):
        parse(doc)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    buckets = Buckets(rate=2, burst=3)
    assert [buckets.take("u", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("u", now=0.0) == pytest.approx(0.5)
    assert buckets.take("other", now=0.0) == 0.0  # users do not share a bucket
    assert buckets.take("u", now=0.5) == 0.0
    assert buckets.take("u", now=0.5) > 0
    bucket = TokenBucket(rate=0, burst=1, tokens=0, stamp=0)
    assert bucket.take(100.0) == float("inf")


def test_buckets_forget_the_least_recently_used_keys() -> None:
    buckets = Buckets(rate=1, burst=1, max_keys=2)
    for key in ("a", "b", "c"):
        buckets.take(key, now=0.0)
    assert len(buckets) == 2


def test_connection_counter() -> None:
    counter = ConnectionCounter(2)
    assert counter.acquire("ip") and counter.acquire("ip") and not counter.acquire("ip")
    assert counter.acquire("other")
    counter.release("ip")
    assert counter.acquire("ip")
    assert ConnectionCounter(0).acquire("ip")


def room(**access: object) -> Room:
    return Room.build("default", "r", {"access": access})


@pytest.mark.parametrize(
    ("access", "user", "groups", "read", "write"),
    [
        ({}, "anyone", (), True, True),
        ({"readOnly": ["ro"]}, "ro", (), True, False),
        ({"visibility": "private", "members": ["m"]}, "m", (), True, True),
        ({"visibility": "private", "members": ["m"]}, "x", (), False, False),
        ({"visibility": "private", "groups": ["g"]}, "x", ("g",), True, True),
        ({"visibility": "private", "groups": ["g"]}, "x", ("h",), False, False),
        ({"visibility": "private", "readOnly": ["ro"]}, "ro", (), True, False),
        ({"visibility": "private", "members": ["m"], "readOnly": ["m"]}, "m", (), True, False),
    ],
)
def test_room_access(
    access: dict[str, object], user: str, groups: tuple[str, ...], read: bool, write: bool
) -> None:
    r = room(**access)
    assert Gateway.may(user, r, "read", groups) is read
    assert Gateway.may(user, r, "write", groups) is write


def test_origin_policy() -> None:
    policy = OriginPolicy("https://chat.example.com, ")
    assert policy.allows(None, "x")  # not a browser
    assert policy.allows("http://host:8080", "host:8080")
    assert policy.allows("https://host:8080", "host:8080")  # TLS terminated in front
    assert policy.allows("https://chat.example.com", "host:8080")
    assert not policy.allows("https://evil.example", "host:8080")
    assert not policy.allows("https://host:8081", "host:8080")
    assert not policy.allows("null", "host:8080")
    assert not policy.allows("https://host:8080.evil.example", "host:8080")
    assert OriginPolicy("*").allows("https://evil.example", "host")


# ---------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["hello", "join", "send", "history", "leave", "typing", "x"])
        | st.text(max_size=8),
        "room": st.text(max_size=70) | st.sampled_from(["general", "a-b", "A", "-x"]),
        "user": st.text(max_size=40),
        "token": st.text(max_size=40),
        "text": st.text(max_size=40),
        "id": st.text(max_size=70),
        "since": json_values,
        "history": json_values,
        "before": json_values,
        "limit": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256) | st.text(max_size=256))
def test_parser_is_total_on_arbitrary_input(raw: bytes | str) -> None:
    with contextlib.suppress(BadRequest):
        protocol.parse(raw)


@settings(max_examples=600, deadline=None)
@given(frames)
def test_parser_accepts_only_valid_frames(data: dict[str, object]) -> None:
    import json

    try:
        frame = protocol.parse(json.dumps(data))
    except BadRequest as exc:
        assert exc.message
        return
    except NatterError as exc:  # pragma: no cover - any other error class is a bug
        raise AssertionError(f"unexpected {exc!r}") from exc
    room = getattr(frame, "room", None)
    if room is not None:
        assert protocol.ROOM_RE.match(room)
    for key in ("since", "history", "before", "limit"):
        value = getattr(frame, key, None)
        assert value is None or (isinstance(value, int) and not isinstance(value, bool))
    if isinstance(frame, protocol.Hello) and frame.user is not None:
        assert protocol.USER_RE.match(frame.user)


def test_forbidden_is_a_natter_error() -> None:
    assert issubclass(Forbidden, NatterError)
