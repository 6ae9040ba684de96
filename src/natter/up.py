"""``natter up``: the whole of natter on one machine.

Starts a real NATS cluster, applies the ChatRoom manifests through the shared
reconciler, starts gateway workers on one port (SO_REUSEPORT), writes
``cluster.json``, restarts whatever crashes, and on SIGINT/SIGTERM stops the
gateways (they drain), then the NATS nodes (lame duck).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from natter import bus, logs
from natter.auth.embedded import UpAuth
from natter.embedded import ClusterError, NatsCluster, check_for
from natter.errors import Unavailable
from natter.reconcile import RoomStatus, reconcile_room
from natter.rooms import load_manifests

log = logs.get("natter.up")
T = TypeVar("T")

SUPERVISE_SECONDS = 0.5


@dataclass
class UpOptions:
    port: int = 8080
    host: str = "127.0.0.1"
    data_dir: Path = Path(".natter")
    gateways: int = 2
    nats_nodes: int = 3
    rooms: Path | None = Path("k8s/rooms")
    sync_interval: str | None = None
    auth: str = "open"
    twitch: list[str] = field(default_factory=list)
    users_file: Path | None = None
    nats_auth: bool | None = None  # per-component NATS users; default: on in jwt mode
    extra_env: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0


@dataclass
class Worker:
    """A supervised child process: a gateway worker or a bridge."""

    index: int
    process: subprocess.Popen[bytes]
    argv: list[str]
    log_name: str
    stopping: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid


class Up:
    def __init__(self, options: UpOptions) -> None:
        self.opts = options
        self.data_dir = options.data_dir.resolve()
        self.auth = UpAuth(
            self.data_dir,
            auth=options.auth,
            users_file=options.users_file,
            nats_auth=options.nats_auth,
            bridge_rooms=[_bridge_room(spec) for spec in options.twitch],
        )
        self.cluster = NatsCluster(
            self.data_dir,
            options.nats_nodes,
            host=options.host,
            sync_interval=options.sync_interval,
            extra_config=self.auth.nats_config,
        )
        self.workers: list[Worker] = []
        self.bridges: list[Worker] = []
        self.stopping = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.opts.host}:{self.opts.port}"

    def _check_port(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((self.opts.host, self.opts.port))
            except OSError as exc:
                raise ClusterError(
                    f"cannot listen on {self.opts.host}:{self.opts.port}: {exc.strerror}; "
                    "pick another with --port"
                ) from exc

    async def apply_rooms(self) -> int:
        if self.opts.rooms is None or not self.opts.rooms.exists():
            return 0
        rooms = list(load_manifests(self.opts.rooms))
        nc = await bus.connect(
            self.auth.operator_settings(self.cluster.nats_url), "natter-up", connect_attempts=20
        )
        try:
            admin = bus.RoomAdmin(nc, timeout=2.0)
            await self._retry(lambda: admin.registry(replicas=min(3, self.opts.nats_nodes)))
            for room in rooms:
                status: RoomStatus = await self._retry(
                    functools.partial(
                        reconcile_room, admin, room, max_replicas=self.opts.nats_nodes
                    )
                )
                log.info(
                    "room ready",
                    room=room.name,
                    stream=status.stream,
                    action=status.action,
                    leader=status.leader,
                )
        finally:
            await nc.drain()
        return len(rooms)

    async def _retry(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run a JetStream step, retrying while the restarted cluster recovers its assets."""
        deadline = time.monotonic() + self.opts.ready_timeout
        while True:
            try:
                return await step()
            except Unavailable as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"JetStream did not become available: {exc.message}"
                    ) from exc
                log.info("waiting for JetStream to recover", error=exc.message)
                await asyncio.sleep(0.5)

    def _worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "NATTER_NATS_URL": self.cluster.nats_url,
                "NATTER_HOST": self.opts.host,
                "NATTER_PORT": str(self.opts.port),
                "NATTER_AUTH": self.opts.auth,
            }
        )
        env.update(self.auth.gateway_env())
        env.update(self.opts.extra_env)
        return env

    def _spawn(self, index: int, argv: list[str], log_name: str, env: dict[str, str]) -> Worker:
        log_file = open(self.data_dir / f"{log_name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "natter", *argv],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log_file.close()
        log.info("process started", name=log_name, pid=process.pid)
        return Worker(index, process, argv, log_name)

    def _spawn_worker(self, index: int) -> Worker:
        return self._spawn(
            index, ["gateway", "--reuse-port"], f"gateway-{index}", self._worker_env()
        )

    def _spawn_bridge(self, index: int, spec: str) -> Worker:
        from natter.bridges.twitch import parse_bridge_spec

        channel, room = parse_bridge_spec(spec)
        env = {**self._worker_env(), "NATTER_TWITCH_HTTP_PORT": "0", **self.auth.bridge_env(room)}
        return self._spawn(
            index,
            ["bridge", "twitch", "--channel", channel, "--room", room],
            f"bridge-twitch-{index}",
            env,
        )

    async def _wait_gateways_ready(self, timeout: float) -> None:
        pids = {w.pid for w in self.workers}
        seen: set[int] = set()

        async def probe() -> bool:
            for worker in self.workers:
                if worker.process.poll() is not None:
                    raise ClusterError(
                        f"gateway worker {worker.index} exited with {worker.process.returncode};"
                        f" see {self.data_dir / f'gateway-{worker.index}.log'}"
                    )
            # A fresh connection each time, so SO_REUSEPORT spreads them over the workers.
            async with httpx.AsyncClient(timeout=1.0) as fresh:
                resp = await fresh.get(f"{self.url}/readyz")
            if resp.status_code == 200:
                seen.add(int(resp.headers.get("x-natter-pid", "0")))
            return pids <= seen

        await check_for(timeout, probe, interval=0.05, what="gateway workers ready")

    def write_state(self) -> Path:
        state = {
            "gateway_url": self.url,
            "nats": self.cluster.describe(),
            "gateways": [{"pid": w.pid, "index": w.index} for w in self.workers],
            "bridges": [{"pid": b.pid, "args": b.argv} for b in self.bridges],
            "data_dir": str(self.data_dir),
        }
        path = self.data_dir / "cluster.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)
        return path

    async def start(self) -> None:
        started = time.monotonic()
        self._check_port()
        await self.cluster.start(timeout=self.opts.ready_timeout)
        count = await self.apply_rooms()
        self.workers = [self._spawn_worker(i) for i in range(self.opts.gateways)]
        self.bridges = [self._spawn_bridge(i, spec) for i, spec in enumerate(self.opts.twitch)]
        self.write_state()
        await self._wait_gateways_ready(self.opts.ready_timeout)
        self.write_state()
        log.info(
            "natter is up", url=self.url, rooms=count, seconds=round(time.monotonic() - started, 2)
        )

    async def supervise(self) -> None:
        """Restart crashed NATS nodes and gateway workers until asked to stop."""
        while not self.stopping.is_set():
            changed = False
            for node in self.cluster.nodes:
                if (
                    not node.stopping
                    and node.process is not None
                    and node.process.poll() is not None
                ):
                    log.warning(
                        "nats node exited; restarting", node=node.name, code=node.process.returncode
                    )
                    node.start()
                    changed = True
            for group in (self.workers, self.bridges):
                for i, worker in enumerate(group):
                    if not worker.stopping and worker.process.poll() is not None:
                        log.warning(
                            "process exited; restarting",
                            name=worker.log_name,
                            code=worker.process.returncode,
                        )
                        group[i] = self._spawn(
                            worker.index, worker.argv, worker.log_name, worker_env_of(worker, self)
                        )
                        changed = True
            if changed:
                self.write_state()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), SUPERVISE_SECONDS)

    async def stop(self) -> None:
        self.stopping.set()
        grace = float(self.opts.extra_env.get("NATTER_SHUTDOWN_GRACE", "10"))
        children = [*self.bridges, *self.workers]
        for worker in children:
            worker.stopping = True
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in children:
            try:
                await asyncio.to_thread(worker.process.wait, grace + 5)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                await asyncio.to_thread(worker.process.wait, 5)
        await self.cluster.stop(lame_duck=True)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "cluster.json").unlink()
        log.info("natter stopped")


def worker_env_of(worker: Worker, up: Up) -> dict[str, str]:
    env = up._worker_env()
    if worker.argv[0] == "bridge":
        env["NATTER_TWITCH_HTTP_PORT"] = "0"
    return env


async def run_up(options: UpOptions) -> int:
    up = Up(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, up.stopping.set)
    try:
        try:
            await up.start()
        except (ClusterError, TimeoutError) as exc:
            log.error("natter up failed", error=str(exc))
            return 1
        if up.stopping.is_set():
            return 0
        print(
            f"natter is up: {up.url}  (state: {up.data_dir / 'cluster.json'}; Ctrl-C stops)",
            flush=True,
        )
        await up.supervise()
        return 0
    finally:
        await up.stop()


def _bridge_room(spec: str) -> str:
    from natter.bridges.twitch import parse_bridge_spec

    return parse_bridge_spec(spec)[1]
