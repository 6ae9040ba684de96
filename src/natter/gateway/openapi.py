"""The OpenAPI 3 description of the gateway's HTTP API, served at ``GET /api/openapi.json``.

Hand-written and small on purpose: it documents what ``api.py`` and ``login.py``
answer (DESIGN.md "HTTP API" and "Authentication (contract)"), and
tests/integration/test_api_fuzz.py fuzzes a live gateway against it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

#: The protocol's error codes (DESIGN.md); every problem body carries one.
ERROR_CODES = [
    "bad_request",
    "unknown_room",
    "forbidden",
    "rate_limited",
    "too_large",
    "unavailable",
]

PROBLEM = "application/problem+json"
_REF = "#/components/schemas/"


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": _REF + "Problem"}}},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


ERRORS: dict[str, dict[str, Any]] = {
    "400": _problem("Malformed request (bad_request)."),
    "401": _problem("Missing, forged or expired credentials (forbidden)."),
    "403": _problem("Not allowed, or a cross-origin request (forbidden)."),
    "404": _problem("No such room, or not one the caller may see (unknown_room)."),
    "411": _problem("A chunked body without Content-Length (bad_request)."),
    "413": _problem("Body or text too large (too_large)."),
    "429": _problem("Rate limited (rate_limited); see Retry-After."),
    "503": _problem("NATS or JetStream not answering (unavailable)."),
}


def _errors(*statuses: int) -> dict[str, dict[str, Any]]:
    return {str(s): ERRORS[str(s)] for s in statuses}


#: Open mode: anyone (a nickname in X-Natter-User or the body); jwt mode: a bearer token.
_AUTH: list[dict[str, list[str]]] = [{}, {"bearer": []}]
_NICKNAME = {
    "name": "X-Natter-User",
    "in": "header",
    "required": False,
    "description": "Open mode only: the nickname to act as (default 'anonymous'); "
    "1-32 letters, digits, spaces or . _ @ - after trimming.",
    "schema": {"type": "string"},
}
_ROOM = {
    "name": "room",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
}


def _query_int(name: str, minimum: int, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum},
    }


_TOKENS = {
    "type": "object",
    "required": ["token", "expires_in", "refresh_token", "refresh_expires_in", "user", "groups"],
    "properties": {
        "token": {"type": "string", "description": "Access token (JWT) for Authorization."},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": "string", "description": "For POST /api/refresh."},
        "refresh_expires_in": {"type": "integer"},
        "user": {"type": "string"},
        "groups": {"type": "array", "items": {"type": "string"}},
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "natter gateway",
        "version": "1",
        "description": "Rooms, history and posting over HTTP; the chat itself is the "
        "WebSocket at /ws. Errors are RFC 9457 problem bodies with the protocol's error code.",
    },
    "paths": {
        "/api/rooms": {
            "get": {
                "operationId": "listRooms",
                "summary": "Rooms the caller may read, with their last seq.",
                "security": _AUTH,
                "parameters": [_NICKNAME],
                "responses": {
                    "200": _json("Rooms.", {"type": "array", "items": {"$ref": _REF + "Room"}}),
                    **_errors(400, 401, 403, 429, 503),
                },
            }
        },
        "/api/rooms/{room}/messages": {
            "parameters": [_ROOM],
            "get": {
                "operationId": "getMessages",
                "summary": "A page of history: before a seq (or the latest), or after a seq.",
                "security": _AUTH,
                "parameters": [
                    _NICKNAME,
                    _query_int("before", 1, "Messages with seq < before (not with after)."),
                    _query_int("after", 0, "Messages with seq > after (not with before)."),
                    _query_int("limit", 1, "Page size; capped by the server's history_max."),
                ],
                "responses": {
                    "200": _json("A page.", {"$ref": _REF + "Page"}),
                    **_errors(400, 401, 403, 404, 429, 503),
                },
            },
            "post": {
                "operationId": "postMessage",
                "summary": "Send a message; the id makes retries idempotent.",
                "security": _AUTH,
                "parameters": [_NICKNAME],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": _REF + "NewMessage"}}},
                },
                "responses": {
                    "201": _json(
                        "Stored.",
                        {
                            "type": "object",
                            "required": ["seq", "id"],
                            "properties": {
                                "seq": {"type": "integer", "minimum": 1},
                                "id": {"type": "string"},
                            },
                        },
                    ),
                    **_errors(400, 401, 403, 404, 411, 413, 429, 503),
                },
            },
        },
        "/api/login": {
            "post": {
                "operationId": "login",
                "summary": "Trade a built-in user's password for an access and a refresh token.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["user", "password"],
                                "properties": {
                                    "user": {"type": "string", "minLength": 1, "maxLength": 1024},
                                    "password": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 1024,
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("Tokens.", _TOKENS),
                    **_errors(400, 401, 403, 411, 413, 429),
                },
            }
        },
        "/api/refresh": {
            "post": {
                "operationId": "refresh",
                "summary": "Trade a refresh token for a new token pair.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["refresh_token"],
                                "properties": {
                                    "refresh_token": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": 1024,
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json("Tokens.", _TOKENS),
                    **_errors(400, 401, 403, 411, 413, 429),
                },
            }
        },
        "/api/auth": {
            "get": {
                "operationId": "authInfo",
                "summary": "Which kind of hello this server wants (for the web UI).",
                "responses": {
                    "200": _json(
                        "Auth mode.",
                        {
                            "type": "object",
                            "required": ["mode", "login", "oidc_issuer"],
                            "properties": {
                                "mode": {"type": "string", "enum": ["open", "jwt"]},
                                "login": {"type": "boolean"},
                                "oidc_issuer": {"type": "string", "nullable": True},
                            },
                        },
                    )
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": _json("OpenAPI 3 description.", {"type": "object"})},
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process is alive.",
                "responses": {"200": _text("ok")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "NATS connected and JetStream answering.",
                "responses": {"200": _text("ready"), "503": _text("not ready: <reason>")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics.",
                "responses": {"200": _text("Prometheus text exposition format.")},
            }
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "jwt mode: a token from POST /api/login or the OIDC issuer.",
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail", "code"],
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer", "minimum": 400, "maximum": 599},
                    "detail": {"type": "string"},
                    "code": {"type": "string", "enum": ERROR_CODES},
                },
            },
            "Room": {
                "type": "object",
                "required": [
                    "name",
                    "namespace",
                    "displayName",
                    "topic",
                    "maxMessageSize",
                    "last_seq",
                ],
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "displayName": {"type": "string"},
                    "topic": {"type": "string"},
                    "maxMessageSize": {"type": "integer", "minimum": 1},
                    "last_seq": {"type": "integer", "minimum": 0},
                },
            },
            "Message": {
                "type": "object",
                "required": ["type", "room", "seq"],
                "properties": {
                    "type": {"type": "string", "enum": ["message"]},
                    "room": {"type": "string"},
                    "seq": {"type": "integer", "minimum": 1},
                    "id": {"type": "string"},
                    "user": {"type": "string"},
                    "text": {"type": "string"},
                    "ts": {"type": "string"},
                    "source": {"type": "string"},
                },
            },
            "Page": {
                "type": "object",
                "required": ["room", "messages"],
                "properties": {
                    "room": {"type": "string"},
                    "messages": {"type": "array", "items": {"$ref": _REF + "Message"}},
                },
            },
            "NewMessage": {
                "type": "object",
                "required": ["text"],
                "properties": {
                    "text": {
                        "type": "string",
                        "minLength": 1,
                        "description": "Not only whitespace; at most the room's maxMessageSize "
                        "bytes of UTF-8.",
                    },
                    "id": {
                        "type": "string",
                        "pattern": "^[A-Za-z0-9_.:@-]{0,64}$",
                        "description": "Client-chosen id; a retry with the same id is stored "
                        "once. Empty or absent: the server picks one.",
                    },
                    "user": {
                        "type": "string",
                        "description": "Open mode only: the nickname, as X-Natter-User "
                        "(jwt mode takes the token's).",
                    },
                },
            },
        },
    },
}


async def endpoint(request: Request) -> Response:
    return JSONResponse(SPEC)
