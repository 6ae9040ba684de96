"""Shared fixtures of the chart tests: a NATS cluster run from the chart's own config."""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from natter.config import Settings
from natter.embedded import check_for, free_ports, nats_server_binary
from tests.chart._helm import Rendered, env_of, render

#: Secrets the chart mounts but never renders (nats.tls.*): name -> key -> content.
ExternalSecrets = dict[str, dict[str, bytes]]


def project(volume: dict[str, Any], secrets: ExternalSecrets, directory: Path) -> None:
    """Write what the kubelet would put in ``volume`` from the external ``secrets`` (the
    volume's sources naming other Secrets or ConfigMaps are left to the caller)."""
    sources = volume.get("projected", {}).get("sources") or [volume]
    for src in sources:
        ref = src.get("secret")
        name = ref and (ref.get("name") or ref.get("secretName"))
        if name not in secrets:
            continue
        items = ref.get("items") or [{"key": k, "path": k} for k in secrets[name]]
        for item in items:
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(secrets[name][item["key"]])


def external_secrets(r: Rendered) -> set[str]:
    """Names of the Secrets the pods mount but the chart does not render (nats.tls.*)."""
    rendered = {s["metadata"]["name"] for s in r.all("Secret")}
    names = set()
    for _, _, spec in r.pod_specs():
        for vol in spec.get("volumes", []):
            for src in vol.get("projected", {}).get("sources") or [vol]:
                ref = src.get("secret")
                name = ref and (ref.get("name") or ref.get("secretName"))
                if name and name not in rendered:
                    names.add(name)
    return names


def fake_tls_secrets(r: Rendered, ca: Any = None) -> ExternalSecrets:
    """Every external Secret as cert-manager would make it (kubernetes.io/tls with
    ca.crt), signed by one trustme CA (``ca``, or a new one): a certificate for
    127.0.0.1 and localhost (where the tests run the servers) and the NATS pods'
    DNS names, with both server and client auth usages."""
    import trustme

    ca = ca or trustme.CA()
    (headless,) = [
        s["metadata"]["name"]
        for s in r.all("Service")
        if s["metadata"]["name"].endswith("-nats-headless")
    ]
    domain = f"{headless}.{r.namespace}.svc"
    out: ExternalSecrets = {}
    for name in sorted(external_secrets(r)):
        cert = ca.issue_cert("127.0.0.1", "localhost", f"*.{domain}", f"*.{domain}.cluster.local")
        out[name] = {
            "tls.crt": b"".join(p.bytes() for p in cert.cert_chain_pems),
            "tls.key": cert.private_key_pem.bytes(),
            "ca.crt": ca.cert_pem.bytes(),
        }
    return out


def write_config(
    r: Rendered, directory: Path, prefix: str = "natter", secrets: ExternalSecrets | None = None
) -> Path:
    """The chart's NATS config files laid out as the pod mounts them (/etc/nats).

    With ``secrets`` (the TLS Secrets the user provides), their items are projected
    too and the config's /etc/nats/ paths point into ``directory``."""
    (directory / "auth").mkdir(parents=True, exist_ok=True)
    text = r.config(f"{prefix}-nats-config", "nats.conf")
    for key in ("users.conf", "cluster.conf"):
        (directory / "auth" / key).write_text(r.config(f"{prefix}-nats-auth", key))
    if secrets:
        (sts,) = r.all("StatefulSet")
        (volume,) = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
        project(volume, secrets, directory)
        text = text.replace('"/etc/nats/', f'"{directory}/')
    (directory / "nats.conf").write_text(text)
    return directory / "nats.conf"


@dataclass
class Node:
    name: str
    client: int
    monitor: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client}"


@dataclass
class ChartCluster:
    nodes: list[Node]
    passwords: dict[str, str]
    rendered: Rendered

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def inbox_prefix(self, user: str | None) -> str | None:
        """The NATTER_NATS_INBOX_PREFIX the chart gives the pods of NATS user ``user``."""
        for _, _, spec in self.rendered.pod_specs():
            for c in spec["containers"]:
                env = env_of(c)
                if env.get("NATTER_NATS_USER") == user:
                    return str(env["NATTER_NATS_INBOX_PREFIX"])
        return None

    def settings(
        self, user: str | None, password: str | None = None, inbox_prefix: str | None = None
    ) -> Settings:
        return Settings(
            nats_url=self.urls,
            nats_user=user,
            nats_password=password if password is not None else self.passwords.get(user or ""),
            nats_inbox_prefix=inbox_prefix or self.inbox_prefix(user),
            nats_connect_timeout=2.0,
        )


#: The NATS user of the cluster fixture's one bridge (room default/general).
BRIDGE_USER = "bridge-default-general"
#: The built-in user the cluster fixture's release lists in auth.users.
LOGIN_USER, LOGIN_PASSWORD = "alice", "chart-test-password"


@functools.cache
def _login_values() -> Path:
    """A values file giving the release one built-in user (a real argon2 hash)."""
    from natter.auth.users import hash_password

    directory = Path(tempfile.mkdtemp(prefix="natter-chart-values-"))
    path = directory / "users-values.yaml"
    user = {"name": LOGIN_USER, "password_hash": hash_password(LOGIN_PASSWORD), "groups": ["ops"]}
    path.write_text(yaml.safe_dump({"auth": {"users": [user]}}))
    atexit.register(shutil.rmtree, directory, True)
    return path


def chart_render() -> Rendered:
    """The release the cluster fixture runs: defaults plus one bridge for default/general
    and one built-in user."""
    return render(
        [_login_values()],
        sets=["bridges.twitch[0].channel=natter_demo", "bridges.twitch[0].room=general"],
    )


def secret_data(r: Rendered, name: str) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in r.one("Secret", name)["data"].items()}


def _localize(
    r: Rendered,
    directory: Path,
    index: int,
    ports: list[tuple[int, int, int]],
    secrets: ExternalSecrets | None = None,
) -> Path:
    """Node ``index``'s config: the chart's files with local ports, paths and route hosts."""
    path = write_config(r, directory, secrets=secrets)
    client, cluster, monitor = ports[index]
    text = path.read_text()
    for old, new in (
        ("\nport: 4222\n", f"\nport: {client}\n"),
        ("\nhttp_port: 8222\n", f"\nhttp_port: {monitor}\n"),
        ("\n  port: 6222\n", f'\n  host: "127.0.0.1"\n  port: {cluster}\n'),
        ('pid_file: "/var/run/nats/nats.pid"', f'pid_file: "{directory / "nats.pid"}"'),
        ('store_dir: "/data"', f'store_dir: "{directory / "data"}"'),
    ):
        assert text.count(old) == 1, f"the chart's nats.conf no longer contains {old!r}"
        text = text.replace(old, new)
    text = text.replace("\nport:", '\nhost: "127.0.0.1"\nport:', 1)
    path.write_text(text)
    routes = (directory / "auth" / "cluster.conf").read_text()
    hosts = re.findall(r"@([^\"]+):6222\"", routes)
    assert len(hosts) == len(ports)
    for host, (_, route_port, _) in zip(hosts, ports, strict=True):
        routes = routes.replace(f'@{host}:6222"', f'@127.0.0.1:{route_port}"')
    (directory / "auth" / "cluster.conf").write_text(routes)
    return path


@contextlib.contextmanager
def run_chart_cluster(
    r: Rendered, base: Path, passwords: dict[str, str], secrets: ExternalSecrets | None = None
) -> Iterator[ChartCluster]:
    """Three real nats-servers from ``r``'s NATS config (``secrets``: its TLS Secrets),
    healthy on return, stopped on exit."""
    flat = free_ports(9)
    ports = [tuple(flat[i * 3 : i * 3 + 3]) for i in range(3)]
    nodes: list[Node] = []
    try:
        for i in range(3):
            directory = base / f"natter-nats-{i}"
            conf = _localize(r, directory, i, ports, secrets)  # type: ignore[arg-type]
            log = (directory / "nats.log").open("wb")
            proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "POD_NAME": f"natter-nats-{i}"},
                start_new_session=True,
            )
            nodes.append(Node(f"natter-nats-{i}", ports[i][0], ports[i][2], proc))
        cluster = ChartCluster(nodes, passwords, r)
        asyncio.run(_wait_healthy(cluster))
        yield cluster
    finally:
        for node in nodes:
            node.process.terminate()
        for node in nodes:
            try:
                node.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=5)


@pytest.fixture(scope="package")
def chart_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartCluster]:
    # One bridge for room default/general, so its user is rendered too.
    r = chart_render()
    creds = secret_data(r, "natter-credentials")
    passwords = {
        "gateway": creds["gateway-password"],
        "operator": creds["operator-password"],
        BRIDGE_USER: creds[f"{BRIDGE_USER}-password"],
    }
    with run_chart_cluster(r, tmp_path_factory.mktemp("chart-nats"), passwords) as cluster:
        yield cluster


async def _wait_healthy(cluster: ChartCluster) -> None:
    async with httpx.AsyncClient(timeout=2.0) as client:

        async def healthy() -> bool:
            for node in cluster.nodes:
                assert node.process.poll() is None, f"{node.name} exited"
                response = await client.get(f"http://127.0.0.1:{node.monitor}/healthz")
                if response.status_code != 200:
                    return False
            return True

        await check_for(60, healthy, interval=0.2, what="the chart's NATS cluster to be healthy")
