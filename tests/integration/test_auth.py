"""Authentication and per-room authorization through real gateway processes and a real cluster.

Each refusal is shown from the outside: the client gets ``forbidden`` (or 401/403
over HTTP), gets no data, and the same request with the right credentials works.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from natter.auth.users import add_user, write_file
from tests.fixtures.client import ChatClient
from tests.fixtures.nats import make_room
from tests.fixtures.natter import GatewayProcs
from tests.fixtures.poll import check_for

SECRET = "test-secret-" + "x" * 40
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}
GROUPS = {"dave": ["ops"]}


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.yaml"
    for name, password in PASSWORDS.items():
        add_user(path, name, password, GROUPS.get(name, []))
    return path


def jwt_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "NATTER_AUTH": "jwt",
        "NATTER_JWT_SECRET": SECRET,
        "NATTER_USERS_FILE": str(users_file(tmp_path)),
        **extra,
    }


async def start(gateways: GatewayProcs, env: dict[str, str]) -> str:
    port = gateways.start(**env)
    await gateways.wait_ready(port)
    return f"http://127.0.0.1:{port}"


async def login(base: str, user: str, password: str | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        resp = await http.post(
            "/api/login", json={"user": user, "password": password or PASSWORDS[user]}
        )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def ws_client(base: str, token: str | None, user: str = "someone") -> ChatClient:
    client = await ChatClient(base.replace("http", "ws") + "/ws", user).connect(hello=False)
    frame: dict[str, Any] = {"type": "hello", "user": user}
    if token is not None:
        frame["token"] = token
    answer = await client.request(frame, lambda f: f["type"] in ("welcome", "error"))
    if answer["type"] == "welcome":
        client.welcome = answer
    return client


def hs256(claims: dict[str, Any], key: str = SECRET) -> str:
    now = int(time.time())
    base = {"iss": "natter", "aud": "natter", "sub": "alice", "typ": "access", "groups": []}
    base.update({"iat": now, "nbf": now, "exp": now + 600})
    return jwt.encode({**base, **claims}, key, algorithm="HS256")


async def test_login_then_chat_the_user_comes_from_the_token(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    await make_room(nats_client, "lobby")
    base = await start(gateways, jwt_env(tmp_path))
    pair = await login(base, "alice")
    assert pair["user"] == "alice" and 0 < pair["expires_in"] <= 900 and pair["refresh_token"]
    # hello also names "mallory": the token wins.
    alice = await ws_client(base, pair["token"], user="mallory")
    assert alice.welcome is not None and alice.welcome["user"] == "alice"
    assert (await alice.join("lobby"))["type"] == "joined"
    assert (await alice.send("lobby", "hi", "m1"))["type"] == "ack"
    (msg,) = await alice.wait_messages("lobby", 1)
    assert msg["user"] == "alice"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        auth = {"Authorization": f"Bearer {pair['token']}"}
        resp = await http.post(
            "/api/rooms/lobby/messages", json={"text": "via http", "user": "mallory"}, headers=auth
        )
        assert resp.status_code == 201
        page = (await http.get("/api/rooms/lobby/messages", headers=auth)).json()
        assert [m["user"] for m in page["messages"]] == ["alice", "alice"]
        info = (await http.get("/api/auth")).json()
        assert info == {"mode": "jwt", "login": True, "oidc_issuer": None}
    await alice.close()


async def test_bad_passwords_and_missing_tokens_get_401_problems(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    await make_room(nats_client, "lobby")
    base = await start(gateways, jwt_env(tmp_path))
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for body in ({"user": "alice", "password": "wrong"}, {"user": "nobody", "password": "x"}):
            resp = await http.post("/api/login", json=body)
            assert resp.status_code == 401
            assert resp.headers["content-type"] == "application/problem+json"
            assert resp.json()["code"] == "forbidden" and "token" not in resp.json()
        assert (await http.post("/api/login", json={"user": "alice"})).status_code == 400
        for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic x"}):
            for method, path in (
                ("GET", "/api/rooms"),
                ("GET", "/api/rooms/lobby/messages"),
                ("POST", "/api/rooms/lobby/messages"),
            ):
                resp = await http.request(method, path, headers=headers, json={"text": "x"})
                assert resp.status_code == 401, (method, path, headers)
                assert resp.headers["www-authenticate"].startswith("Bearer")
        # The history is still empty: nothing got in.
        token = (await login(base, "alice"))["token"]
        page = await http.get(
            "/api/rooms/lobby/messages", headers={"Authorization": f"Bearer {token}"}
        )
        assert page.json()["messages"] == []


async def test_forged_expired_and_wrong_key_tokens_are_forbidden(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    await make_room(nats_client, "lobby")
    base = await start(gateways, jwt_env(tmp_path, NATTER_MAX_FAILED_HELLOS="100"))
    pair = await login(base, "alice")
    header, _, signature = pair["token"].split(".")
    forged_claims = jwt.utils.base64url_encode(b'{"sub":"bob","typ":"access"}').decode()
    now = int(time.time())
    bad = {
        "garbage": "not-a-jwt",
        "wrong key": hs256({}, key="another-secret-" + "y" * 40),
        "expired": hs256({"iat": now - 1000, "nbf": now - 1000, "exp": now - 60}),
        "alg none": jwt.encode({"sub": "alice", "iss": "natter", "aud": "natter"}, None, "none"),
        "tampered": f"{header}.{forged_claims}.{signature}",
        "refresh as access": pair["refresh_token"],
        "other issuer": hs256({"iss": "elsewhere"}),
        "no token": None,
    }
    client = await ws_client(base, None, user="alice")
    for what, token in bad.items():
        frame: dict[str, Any] = {"type": "hello", "user": "alice"}
        if token is not None:
            frame["token"] = token
        answer = await client.request(frame, lambda f: f["type"] in ("welcome", "error"))
        assert answer["type"] == "error" and answer["code"] == "forbidden", what
        denied = await client.join("lobby")
        assert denied["type"] == "error" and denied["code"] == "bad_request", what
    assert not [f for f in client.frames if f["type"] in ("welcome", "joined", "message")]
    # The right token on the same socket works.
    ok = await client.request(
        {"type": "hello", "token": pair["token"]}, lambda f: f["type"] in ("welcome", "error")
    )
    assert ok["type"] == "welcome" and ok["user"] == "alice"
    await client.close()
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for what, token in bad.items():
            if token is None:
                continue
            resp = await http.get("/api/rooms", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 401, what
        metrics = (await http.get("/metrics")).text
    assert 'natter_gateway_refusals_total{reason="token"}' in metrics


async def test_repeated_bad_hellos_close_the_socket(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    base = await start(gateways, jwt_env(tmp_path, NATTER_MAX_FAILED_HELLOS="3"))
    client = await ws_client(base, "bad-1")
    for i in (2, 3):
        await client.send_frame({"type": "hello", "token": f"bad-{i}"})
    with pytest.raises(ConnectionError):
        await client.wait_for(lambda f: f["type"] == "welcome", timeout=10)
    assert client.closed == (1008, "too many refused hellos")


async def test_sockets_that_never_say_hello_or_outlive_their_token_are_closed(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    base = await start(gateways, jwt_env(tmp_path, NATTER_HELLO_TIMEOUT="0.5"))
    silent = await ChatClient(base.replace("http", "ws") + "/ws", "x").connect(hello=False)
    with pytest.raises(ConnectionError):
        await silent.wait_for(lambda f: False, timeout=10)
    assert silent.closed == (1008, "no hello")
    short = hs256({"exp": int(time.time()) + 2})
    client = await ws_client(base, short)
    assert client.welcome is not None
    with pytest.raises(ConnectionError):
        await client.wait_for(lambda f: False, timeout=15)
    assert client.closed == (1008, "token expired")


async def test_refresh_rotates_tokens_until_the_user_is_removed(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    env = jwt_env(tmp_path)
    base = await start(gateways, env)
    pair = await login(base, "bob")
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        resp = await http.post("/api/refresh", json={"refresh_token": pair["refresh_token"]})
        assert resp.status_code == 200
        fresh = resp.json()
        assert fresh["user"] == "bob" and fresh["token"] != pair["token"]
        # An access token is not a refresh token.
        resp = await http.post("/api/refresh", json={"refresh_token": pair["token"]})
        assert resp.status_code == 401
        # Remove bob from the users file: his refresh token stops working.
        from natter.auth.users import load_file

        path = Path(env["NATTER_USERS_FILE"])
        users = load_file(path)
        del users["bob"]
        write_file(path, users)
        resp = await http.post("/api/refresh", json={"refresh_token": fresh["refresh_token"]})
        assert resp.status_code == 401
        resp = await http.post("/api/login", json={"user": "bob", "password": "bob-pw"})
        assert resp.status_code == 401


async def test_private_rooms_admit_members_groups_and_read_only_users(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    access = {
        "visibility": "private",
        "members": ["alice"],
        "groups": ["ops"],
        "readOnly": ["carol"],
    }
    await make_room(nats_client, "staff", access=access, topic="the secret plan")
    await make_room(nats_client, "lobby")
    base = await start(gateways, jwt_env(tmp_path))
    tokens = {name: (await login(base, name))["token"] for name in PASSWORDS}
    alice = await ws_client(base, tokens["alice"])
    await alice.join("staff")
    assert (await alice.send("staff", "members only", "s1"))["type"] == "ack"

    # bob is not a member: every way in is forbidden, and says nothing about the room.
    bob = await ws_client(base, tokens["bob"])
    for frame in (
        {"type": "join", "room": "staff"},
        {"type": "history", "room": "staff"},
        {"type": "send", "room": "staff", "id": "b1", "text": "let me in"},
    ):
        answer = await bob.request(frame, lambda f: f["type"] == "error")
        assert answer["code"] == "forbidden", frame
        assert "secret plan" not in answer["message"] and "alice" not in answer["message"]
    assert not [f for f in bob.frames if f["type"] in ("joined", "message", "history")]

    # dave is in group ops; carol may only read.
    dave = await ws_client(base, tokens["dave"])
    assert (await dave.join("staff"))["type"] == "joined"
    assert (await dave.send("staff", "ops here", "d1"))["type"] == "ack"
    carol = await ws_client(base, tokens["carol"])
    assert (await carol.join("staff"))["type"] == "joined"
    assert [m["text"] for m in await carol.wait_messages("staff", 2)] == [
        "members only",
        "ops here",
    ]
    denied = await carol.send("staff", "can I?", "c1")
    assert denied["type"] == "error" and denied["code"] == "forbidden"

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:

        def auth(name: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {tokens[name]}"}

        listed = (await http.get("/api/rooms", headers=auth("bob"))).json()
        assert [r["name"] for r in listed] == ["lobby"]
        listed = (await http.get("/api/rooms", headers=auth("alice"))).json()
        assert sorted(r["name"] for r in listed) == ["lobby", "staff"]
        # bob is a member of lobby, but not of staff: the HTTP API refuses too.
        resp = await http.get("/api/rooms/staff/messages", headers=auth("bob"))
        assert resp.status_code == 403 and "secret plan" not in resp.text
        assert "members only" not in resp.text
        resp = await http.post("/api/rooms/staff/messages", json={"text": "x"}, headers=auth("bob"))
        assert resp.status_code == 403
        resp = await http.post(
            "/api/rooms/staff/messages", json={"text": "x"}, headers=auth("carol")
        )
        assert resp.status_code == 403
        assert (await http.get("/api/rooms/staff/messages", headers=auth("carol"))).is_success
        page = (await http.get("/api/rooms/staff/messages", headers=auth("alice"))).json()
        assert [m["text"] for m in page["messages"]] == ["members only", "ops here"]
    for client in (alice, bob, dave, carol):
        await client.close()


async def test_oidc_tokens_verified_against_jwks_with_key_rotation(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    from tests.fixtures.oidc import FakeIssuer

    await make_room(nats_client, "staff", access={"visibility": "private", "groups": ["eng"]})
    with FakeIssuer() as idp:
        env = {
            "NATTER_AUTH": "jwt",
            "NATTER_OIDC_ISSUER": idp.issuer,
            "NATTER_OIDC_AUDIENCE": "natter-web",
        }
        base = await start(gateways, env)
        good = idp.token("k1", {"preferred_username": "erin", "groups": ["eng"]})
        erin = await ws_client(base, good)
        assert erin.welcome is not None and erin.welcome["user"] == "erin"
        assert (await erin.join("staff"))["type"] == "joined"  # group from the token
        await erin.close()

        refused = {
            "wrong audience": idp.token("k1", {"preferred_username": "erin", "aud": "other"}),
            "expired": idp.token(
                "k1", {"preferred_username": "erin", "exp": int(time.time()) - 60}
            ),
            "unknown key": idp.token("k1", {"preferred_username": "erin"}, sign_with="rogue"),
            "hs256 with the public key": idp.hs256_confusion("k1"),
            "another issuer": idp.token("k1", {"preferred_username": "erin", "iss": "https://x"}),
        }
        for what, token in refused.items():
            client = await ws_client(base, token)
            assert client.welcome is None, what
            await client.close()

        # Rotation: the issuer now signs with k2 only; the gateway fetches the new set when
        # it first sees kid k2 (unknown kids refetch at most once a second).
        idp.rotate(["k2"])
        fresh = idp.token("k2", {"preferred_username": "erin"})

        async def accepted() -> bool:
            client = await ws_client(base, fresh)
            await client.close()
            return client.welcome is not None and client.welcome["user"] == "erin"

        await check_for(10, accepted, interval=0.2, what="a token signed with the new key")
        old = await ws_client(base, good)  # k1 was retired
        assert old.welcome is None
        await old.close()
        assert idp.jwks_fetches >= 2


async def test_a_flood_from_one_user_does_not_hold_back_another(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    await make_room(nats_client, "lobby")
    env = jwt_env(tmp_path, NATTER_SEND_RATE="2", NATTER_SEND_BURST="5")
    base = await start(gateways, env)
    mallory = await ws_client(base, (await login(base, "bob"))["token"])
    alice = await ws_client(base, (await login(base, "alice"))["token"])
    started = time.monotonic()
    flood = [
        {"type": "send", "room": "lobby", "id": f"f{i}", "text": f"spam {i}"} for i in range(60)
    ]
    for frame in flood:
        await mallory.send_frame(frame)
    answers = [
        await mallory.wait_for(
            lambda f, i=i: f.get("id") == f"f{i}" or f.get("ref") == f"f{i}", timeout=20
        )
        for i in range(60)
    ]
    acks = [a for a in answers if a["type"] == "ack"]
    limited = [a for a in answers if a["type"] == "error" and a["code"] == "rate_limited"]
    assert len(acks) + len(limited) == 60
    elapsed = time.monotonic() - started
    assert 5 <= len(acks) <= 5 + 2 * elapsed + 1
    assert all(0 < e["retry_after"] <= 1 for e in limited)
    # alice is not affected: all her messages are acknowledged promptly.
    mine = await asyncio.gather(*(alice.send("lobby", f"hello {i}", f"a{i}") for i in range(5)))
    assert [a["type"] for a in mine] == ["ack"] * 5
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        # The HTTP API draws on the same per-user bucket.
        token = (await login(base, "bob"))["token"]
        codes = []
        for i in range(20):
            resp = await http.post(
                "/api/rooms/lobby/messages",
                json={"text": f"more {i}"},
                headers={"Authorization": f"Bearer {token}"},
            )
            codes.append(resp.status_code)
            if resp.status_code == 429:
                assert int(resp.headers["retry-after"]) >= 1
                assert resp.json()["code"] == "rate_limited"
        assert 429 in codes and codes.count(201) <= 5 + 2 * (time.monotonic() - started) + 1
    await mallory.close()
    await alice.close()
