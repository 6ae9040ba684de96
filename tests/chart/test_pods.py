"""The chart's pods run as local processes: each natter container's command and
environment exactly as rendered (Secrets resolved, only addresses made local),
against a NATS cluster running the chart's own NATS config. The gateway must
become ready as the `gateway` NATS user, and the Helm test script must send a
message through it and read it back."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from natter import bus
from natter.config import Settings
from natter.embedded import check_for, free_ports
from natter.reconcile import reconcile_room
from natter.rooms import Room
from tests.chart._helm import CHART, Rendered, env_of
from tests.chart.conftest import LOGIN_PASSWORD, LOGIN_USER, ChartCluster, secret_data

NATTER = [sys.executable, "-m", "natter"]


def container_env(r: Rendered, container: dict[str, Any]) -> dict[str, str]:
    """A container's environment with secretKeyRefs resolved from the rendered Secrets."""
    out: dict[str, str] = {}
    for name, value in env_of(container).items():
        if isinstance(value, dict):
            ref = value["secretKeyRef"]
            out[name] = secret_data(r, ref["name"])[ref["key"]]
        else:
            out[name] = value
    return out


def natter_containers(r: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    for where, _, spec in r.pod_specs():
        for c in spec["containers"]:
            if c["image"].split(":")[0].endswith("natter") and "args" in c:
                yield where, c


def test_every_natter_command_is_a_real_cli_command(chart_cluster: ChartCluster) -> None:
    """`natter <args> --help` parses the exact arguments the chart gives each container."""
    seen = set()
    for where, c in natter_containers(chart_cluster.rendered):
        proc = subprocess.run(
            [*NATTER, *c["args"], "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, f"{where}: natter {' '.join(c['args'])}: {proc.stderr}"
        seen.add(c["args"][0])
    assert seen == {"gateway", "operator", "bridge"}


def test_every_natter_variable_is_a_setting(chart_cluster: ChartCluster) -> None:
    """Each NATTER_* variable the chart sets is read by some settings class."""
    from natter.bridges._twitch_proto import TwitchSettings
    from natter_operator.settings import OperatorSettings

    known = set()
    for cls in (Settings, OperatorSettings, TwitchSettings):
        prefix = cls.model_config.get("env_prefix", "")
        known |= {f"{prefix}{name}".upper() for name in cls.model_fields}
    for where, c in natter_containers(chart_cluster.rendered):
        unknown = {n for n in env_of(c) if n.startswith("NATTER_")} - known
        assert not unknown, f"{where} sets variables no natter setting reads: {sorted(unknown)}"


#: Gateway variables only jwt mode renders (the default render sets no OIDC values).
JWT_ONLY = ("NATTER_JWT_SECRET", "NATTER_USERS_FILE")


def _open_auth(env: dict[str, str]) -> dict[str, str]:
    """The environment `--set auth.mode=open` renders (test_auth_modes_differ_only_so checks)."""
    out = {k: v for k, v in env.items() if k not in JWT_ONLY}
    if "NATTER_AUTH" in out:
        out["NATTER_AUTH"] = "open"
    return out


def mount_secrets(
    r: Rendered, pod: dict[str, Any], c: dict[str, Any], root: Path
) -> dict[str, str]:
    """Lay out the container's Secret volume mounts under ``root`` as the kubelet would;
    returns the path rewrites (mountPath -> local directory) for its environment."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    rewrites = {}
    for mount in c.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        obj = r.one("Secret", secret["secretName"])
        data = {
            **{k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()},
            **obj.get("stringData", {}),
        }
        local = root / mount["name"]
        local.mkdir(parents=True)
        for item in secret.get("items") or [{"key": k, "path": k} for k in data]:
            (local / item["path"]).write_text(data[item["key"]])
        rewrites[mount["mountPath"]] = str(local)
    return rewrites


def test_auth_modes_differ_only_so() -> None:
    from tests.chart._helm import render

    def envs(r: Rendered) -> dict[str, set[str]]:
        return {
            where: {f"{n}={'<secret>' if isinstance(v, dict) else v}" for n, v in env_of(c).items()}
            for where, _, spec in r.pod_specs()
            for c in spec["containers"]
        }

    jwt, open_ = envs(render()), envs(render(sets=["auth.mode=open"]))
    assert set(jwt) == set(open_)
    for where in jwt:
        expected = {e for e in jwt[where] if not e.startswith(tuple(f"{n}=" for n in JWT_ONLY))}
        expected = {"NATTER_AUTH=open" if e == "NATTER_AUTH=jwt" else e for e in expected}
        assert open_[where] == expected, where


@pytest.fixture(params=["open", "jwt"])
def auth_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gateway(chart_cluster: ChartCluster, auth_mode: str, tmp_path: Path) -> Iterator[str]:
    r = chart_cluster.rendered
    pod = r.one("Deployment", "natter-gateway")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = container_env(r, c)
    if auth_mode == "open":
        env = _open_auth(env)
    else:
        for mount_path, local in mount_secrets(r, pod, c, tmp_path / "mounts").items():
            env = {k: v.replace(mount_path, local, 1) for k, v in env.items()}
    port = free_ports(1)[0]
    env.update(
        {
            "NATTER_NATS_URL": chart_cluster.urls,
            "NATTER_HOST": "127.0.0.1",
            "NATTER_PORT": str(port),
            "NATTER_LOG_FORMAT": "json",
        }
    )
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [*NATTER, *c["args"]],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=float(env["NATTER_SHUTDOWN_GRACE"]) + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


async def _ready(url: str) -> None:
    async with httpx.AsyncClient(timeout=2.0) as client:

        async def ready() -> bool:
            return (await client.get(f"{url}/readyz")).status_code == 200

        await check_for(60, ready, interval=0.2, what="the gateway's /readyz")


def test_helm_test_passes_against_the_gateway(
    chart_cluster: ChartCluster, gateway: str, auth_mode: str
) -> None:
    r = chart_cluster.rendered
    room_obj = r.one("ChatRoom", "natter-helm-test")

    async def prepare() -> None:
        # What the operator does for the hook's ChatRoom, as the chart's operator user.
        nc = await bus.connect(chart_cluster.settings("operator"), "chart-test-operator")
        try:
            room = Room.build(
                room_obj["metadata"]["namespace"], room_obj["metadata"]["name"], room_obj["spec"]
            )
            await reconcile_room(bus.RoomAdmin(nc), room)
        finally:
            await nc.drain()
        await _ready(gateway)

    asyncio.run(prepare())
    pod = r.one("Pod", "natter-helm-test")
    (c,) = pod["spec"]["containers"]
    env = container_env(r, c)
    if auth_mode == "open":
        env = _open_auth(env)
    env["NATTER_TEST_GATEWAY"] = gateway
    proc = subprocess.run(
        [sys.executable, str(CHART / "files" / "helm-test.py")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=float(env["NATTER_TEST_TIMEOUT"]) + 30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: sent and read back" in proc.stdout


@pytest.mark.parametrize("auth_mode", ["jwt"])
def test_built_in_users_log_in_through_the_mounted_secret(
    chart_cluster: ChartCluster, gateway: str, auth_mode: str
) -> None:
    """jwt mode: the user the release lists in auth.users logs in with POST /api/login,
    reading the users file the chart mounts at NATTER_USERS_FILE, and the token works."""

    async def login() -> None:
        await _ready(gateway)
        async with httpx.AsyncClient(base_url=gateway, timeout=10.0) as client:
            bad = await client.post("/api/login", json={"user": LOGIN_USER, "password": "nope"})
            assert bad.status_code == 401
            ok = await client.post(
                "/api/login", json={"user": LOGIN_USER, "password": LOGIN_PASSWORD}
            )
            assert ok.status_code == 200, ok.text
            token = ok.json()["token"]
            rooms = await client.get("/api/rooms", headers={"Authorization": f"Bearer {token}"})
            assert rooms.status_code == 200, rooms.text
            assert (await client.get("/api/rooms")).status_code == 401

    asyncio.run(login())
