"""Fuzzing the HTTP API of a real gateway on a real 3-node cluster against its OpenAPI description.

schemathesis loads ``GET /api/openapi.json`` from the live gateway and generates
requests for every operation, valid (positive) and invalid (negative), with and
without credentials. Every response must conform to the description, and
beyond that: no 5xx (NATS is up throughout), and every error is an
``application/problem+json`` body whose ``code`` is one of the protocol's codes.
Plain hypothesis then sends what the description leaves out (other methods and
paths, undecodable bodies, hostile ids) and holds the gateway to the same rule.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from natter.auth.users import add_user
from natter.config import Settings
from natter.gateway.app import create_app
from natter.gateway.openapi import ERROR_CODES, SPEC
from tests.fixtures.nats import make_room
from tests.fixtures.natter import GatewayProcs

SECRET = "fuzz-secret-" + "x" * 40
#: Examples per mode; with the cluster and gateway start the test stays well under 60 s.
EXAMPLES = 250
#: The fuzzer is not testing the abuse limits (tests/integration/test_auth.py does).
NO_LIMITS = {
    "NATTER_REQUEST_RATE": "100000",
    "NATTER_REQUEST_BURST": "100000",
    "NATTER_LOGIN_RATE": "100000",
    "NATTER_LOGIN_BURST": "100000",
}
#: Invalid requests must be refused with a 4xx the description lists (413 and 411 included).
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "411", "413", "429"]
            }
        }
    }
)
CHECKS: list[CheckFunction] = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def test_every_api_route_is_described() -> None:
    app = create_app(Settings())
    described = SPEC["paths"]
    for route in app.routes:
        if isinstance(route, Route) and (route.path.startswith("/api") or route.path in described):
            assert route.path in described, route.path
            for method in (route.methods or set()) - {"HEAD"}:
                assert method.lower() in described[route.path], (method, route.path)
    assert set(described) <= {r.path for r in app.routes if isinstance(r, Route)}


def check_problem(response: schemathesis.Response) -> None:
    """No 5xx; every error a problem body with a contract code."""
    status = response.status_code
    text = response.content[:300].decode(errors="replace")
    where = f"{response.request.method} {response.request.url} -> {status}: {text}"
    assert status < 500, where
    if status >= 400:
        assert response.headers.get("content-type") == ["application/problem+json"], where
        body = json.loads(response.content)
        assert body["code"] in ERROR_CODES, where
        assert body["status"] == status, where
        assert body["type"].endswith("/" + body["code"]) and body["title"] and body["detail"]


def fuzz(base: str, credentials: list[dict[str, str]], rooms: list[str]) -> None:
    """Run the fuzzer (blocking: it runs in a thread, off the test's event loop)."""
    schema = schemathesis.openapi.from_url(f"{base}/api/openapi.json", config=CONFIG)
    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
    )
    session = requests.Session()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, extra=st.sampled_from(credentials), room=st.sampled_from([None, *rooms]))
    def run(case: schemathesis.Case[Any], extra: dict[str, str], room: str | None) -> None:
        # Valid requests often name a room that exists (a negative case keeps its bad room).
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if positive and room is not None and "room" in (case.path_parameters or {}):
            case.path_parameters["room"] = room
        headers = dict(extra)  # case.call adds its own headers to the dict it is given
        response = case.call(base_url=base, session=session, headers=headers, timeout=15)
        check_problem(response)
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    finally:
        session.close()


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_NUMBERS = st.sampled_from(["", "0", "1", "-1", "3", "1e3", "x", "9" * 30, " 2", "1.5", "\u0661"])


def raw_requests(rooms: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Requests schemathesis does not make: other methods and paths, hostile bodies and ids."""
    room = st.sampled_from(rooms) | st.text(max_size=70)
    path = st.one_of(
        st.sampled_from(["/api/rooms", "/api/login", "/api/refresh", "/api/auth", "/api/"]),
        room.map(lambda r: f"/api/rooms/{quote(r, safe='')}/messages"),
        st.text(max_size=30).map(lambda t: "/api/" + quote(t)),
    )
    message = st.fixed_dictionaries(
        {},
        optional={
            "text": st.text(max_size=40) | _VALUES,
            "id": st.sampled_from(["a\n", "a\r\nX: y", " a", "é", "a" * 65, ""]) | _VALUES,
            "user": st.sampled_from(["a\n", " ", "é", "x" * 40]) | _VALUES,
            "password": _VALUES,
            "refresh_token": _VALUES,
        },
    )
    body = st.one_of(
        st.none(),
        st.binary(max_size=64),
        _VALUES.map(lambda v: json.dumps(v).encode()),
        message.map(lambda v: json.dumps(v).encode()),
    )
    return st.fixed_dictionaries(
        {
            "method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
            "url": path,
            "params": st.dictionaries(st.sampled_from(["before", "after", "limit"]), _NUMBERS),
            "content": body,
            "content_type": st.sampled_from([None, "application/json", "text/plain"]),
        }
    )


def post(room: str, body: Any) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": f"/api/rooms/{quote(room, safe='')}/messages",
        "params": {},
        "content": json.dumps(body).encode(),
        "content_type": "application/json",
    }


def fuzz_raw(base: str, credentials: list[dict[str, str]], rooms: list[str]) -> None:
    """Hypothesis straight against the API, for what the description does not cover."""
    with httpx.Client(base_url=base, timeout=15) as http:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(request=raw_requests(rooms), extra=st.sampled_from(credentials))
        @example(post(rooms[0], {"text": "hi", "id": "a\n"}), credentials[1])
        @example(
            post(rooms[0], {"text": "hi", "id": "a\r\nNats-Expected-Stream: x"}), credentials[1]
        )
        @example(post(rooms[0], {"text": "hi", "user": "bob\n"}), credentials[0])
        @example(post(rooms[0], {"text": "\ufeff"}), credentials[1])
        @example(post(rooms[0] + "\n", {"text": "hi"}), credentials[1])
        def run(request: dict[str, Any], extra: dict[str, str]) -> None:
            headers = dict(extra)
            if request["content_type"]:
                headers["Content-Type"] = request["content_type"]
            response = http.request(
                request["method"],
                request["url"],
                params=request["params"],
                content=request["content"],
                headers=headers,
            )
            where = f"{request} {extra} -> {response.status_code}: {response.text[:300]}"
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json", where
                if request["method"] != "HEAD":
                    body = response.json()
                    assert body["code"] in ERROR_CODES, where
                    assert body["status"] == response.status_code, where

        run()


async def seed(base: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for n, text in enumerate(["hello", "<script>alert(1)</script>", "ü" * 100]):
            resp = await http.post(
                "/api/rooms/lobby/messages", json={"id": f"seed-{n}", "text": text}, headers=headers
            )
            assert resp.status_code == 201, resp.text
        served = (await http.get("/api/openapi.json")).json()
    assert served == json.loads(json.dumps(SPEC))


async def start(gateways: GatewayProcs, **env: str) -> str:
    port = gateways.start(**NO_LIMITS, **env)
    await gateways.wait_ready(port)
    return f"http://127.0.0.1:{port}"


async def test_fuzz_http_api_open_mode(nats_client: Any, gateways: GatewayProcs) -> None:
    await make_room(nats_client, "lobby")
    await make_room(nats_client, "tiny", maxMessageSize=16)
    base = await start(gateways, NATTER_AUTH="open")
    await seed(base, {"X-Natter-User": "seeder"})
    credentials = [{}, {"X-Natter-User": "fuzzer"}, {"Origin": "https://evil.example"}]
    await asyncio.to_thread(fuzz, base, credentials, ["lobby", "tiny"])
    await asyncio.to_thread(fuzz_raw, base, credentials, ["lobby", "tiny"])


async def test_fuzz_http_api_jwt_mode(
    nats_client: Any, gateways: GatewayProcs, tmp_path: Path
) -> None:
    users = tmp_path / "users.yaml"
    add_user(users, "alice", "alice-pw", [])
    add_user(users, "bob", "bob-pw", ["ops"])
    await make_room(nats_client, "lobby")
    access = {"visibility": "private", "members": ["alice"], "readOnly": []}
    await make_room(nats_client, "staff", access=access)
    base = await start(
        gateways, NATTER_AUTH="jwt", NATTER_JWT_SECRET=SECRET, NATTER_USERS_FILE=str(users)
    )
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        pairs = []
        for user in ("alice", "bob"):
            resp = await http.post("/api/login", json={"user": user, "password": f"{user}-pw"})
            assert resp.status_code == 200, resp.text
            pairs.append(resp.json())
    alice, bob = ({"Authorization": f"Bearer {p['token']}"} for p in pairs)
    await seed(base, alice)
    now = int(time.time())
    expired = jwt.encode(
        {
            "iss": "natter",
            "aud": "natter",
            "sub": "alice",
            "typ": "access",
            "groups": [],
            "iat": now - 1000,
            "nbf": now - 1000,
            "exp": now - 500,
        },
        SECRET,
        algorithm="HS256",
    )
    credentials = [
        {},
        alice,
        alice,
        bob,
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": "Bearer " + pairs[0]["refresh_token"]},
        {"Authorization": "Bearer not.a.jwt"},
    ]
    await asyncio.to_thread(fuzz, base, credentials, ["lobby", "staff"])
    await asyncio.to_thread(fuzz_raw, base, credentials, ["lobby", "staff"])
