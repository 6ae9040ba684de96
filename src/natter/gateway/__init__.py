"""The Starlette WebSocket gateway: protocol, HTTP API, per-room fan-out, web UI."""
