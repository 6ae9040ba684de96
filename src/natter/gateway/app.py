"""The gateway's Starlette application; its lifespan owns the NATS connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from natter import logs
from natter.config import Settings
from natter.gateway import api, login, openapi, ws
from natter.gateway.security import SecurityMiddleware
from natter.gateway.state import Gateway

STATIC = Path(__file__).parent / "static"
log = logs.get("natter.gateway")


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = Gateway(settings)
        app.state.gateway = gateway
        await gateway.start()
        log.info("gateway started", pid=gateway.pid, nats=settings.nats_url, auth=settings.auth)
        try:
            yield
        finally:
            await gateway.close()

    async def index(request: object) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/", index),
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/metrics", api.metrics_endpoint),
        Route("/api/auth", login.auth_info),
        Route("/api/openapi.json", openapi.endpoint),
        Route("/api/login", login.login, methods=["POST"]),
        Route("/api/refresh", login.refresh, methods=["POST"]),
        Route("/api/rooms", api.list_rooms),
        Route("/api/rooms/{room}/messages", api.get_messages, methods=["GET"]),
        Route("/api/rooms/{room}/messages", api.post_message, methods=["POST"]),
        WebSocketRoute("/ws", ws.endpoint),
        Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]
    middleware = [Middleware(SecurityMiddleware, settings=settings)]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={HTTPException: api.http_error},
    )
