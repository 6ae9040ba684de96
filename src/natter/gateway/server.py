"""``natter gateway``: uvicorn serving the gateway app, optionally on a shared port."""

from __future__ import annotations

import gc
import socket

import uvicorn

from natter import logs
from natter.config import Settings
from natter.gateway.app import create_app


def bind(host: str, port: int, *, reuse_port: bool, write_deadline: float = 0.0) -> socket.socket:
    """A listening socket; with ``reuse_port`` several workers share the port.

    ``write_deadline`` (seconds) becomes TCP_USER_TIMEOUT, which accepted sockets
    inherit: a client that stops reading, or vanishes, while data waits for it is
    aborted by the kernel. Without it a peer that keeps its window shut holds the
    socket and its buffers forever, since closing waits for the buffers to drain.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if write_deadline > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(write_deadline * 1000))
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(settings: Settings, *, reuse_port: bool = False) -> None:
    logs.setup(settings.log_level, settings.log_format, process="gateway")
    sock = bind(
        settings.host, settings.port, reuse_port=reuse_port, write_deadline=settings.write_deadline
    )
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        access_log=False,
        ws=settings.ws_impl,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws_max_size=max(1 << 20, 16 * settings.max_frame_bytes),
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    tune_gc()
    server.run(sockets=[sock])


#: Young-generation threshold and the older ones (CPython's defaults: 700, 10, 10).
GC_THRESHOLDS = (50_000, 50, 1000)


def tune_gc() -> None:
    """Keep the cycle collector off the fan-out path.

    With thousands of sockets the default thresholds run a full (generation 2)
    collection every few seconds of fan-out, each a pause of 20-180 ms across
    100-200k objects, which was the p99 (bench/REPORT.md). Everything loaded so
    far is frozen out of the collector's scans; young collections run far less
    often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
