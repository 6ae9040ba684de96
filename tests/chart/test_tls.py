"""NATS TLS (nats.tls): what the chart renders for client and route TLS, and the
rendered configuration run for real — three nats-servers with the chart's nats.conf
(client TLS with mutual verification, TLS routes) and trustme certificates laid out
as the kubelet projects the Secrets; natter.bus connects with the rendered
environment and mounts, and is refused without the CA or the client certificate.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trustme

from natter import bus
from natter.config import Settings
from natter.errors import Unavailable
from natter.reconcile import reconcile_room
from natter.rooms import Room
from tests.chart import _natsconf as reader
from tests.chart._helm import (
    CHART,
    KIND_VALUES,
    Rendered,
    env_of,
    helm,
    render,
    render_scenario,
    values_for,
)
from tests.chart.conftest import (
    ChartCluster,
    ExternalSecrets,
    fake_tls_secrets,
    project,
    run_chart_cluster,
    secret_data,
    write_config,
)
from tests.chart.test_pods import container_env
from tests.e2e.walkthrough import README, steps

CLIENT_ONLY = ["nats.tls.client.enabled=true", "nats.tls.client.secretName=nats-tls"]


def nats_clients(r: Rendered) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, pod spec, container) of every container that connects to NATS."""
    for where, _, spec in r.pod_specs():
        for c in spec["containers"]:
            if "NATTER_NATS_USER" in env_of(c):
                yield where, spec, c


def projected_items(volume: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """path -> (Secret, key) of a projected volume's Secret items."""
    out = {}
    for src in volume["projected"]["sources"]:
        if "secret" in src:
            for item in src["secret"].get("items", []):
                out[item["path"]] = (src["secret"]["name"], item["key"])
    return out


def headless(r: Rendered) -> str:
    (name,) = [
        s["metadata"]["name"]
        for s in r.all("Service")
        if s["metadata"]["name"].endswith("-headless")
    ]
    return str(name)


def nats_pod(r: Rendered) -> dict[str, Any]:
    (sts,) = r.all("StatefulSet")
    spec: dict[str, Any] = sts["spec"]["template"]["spec"]
    return spec


def parsed_conf(r: Rendered, directory: Path) -> dict[str, Any]:
    return reader.load(write_config(r, directory), {"POD_NAME": "natter-nats-0"})


# --- rendering ------------------------------------------------------------------------


def test_tls_is_off_by_default(tmp_path: Path) -> None:
    r = render_scenario("defaults")
    conf = parsed_conf(r, tmp_path)
    assert "tls" not in conf and "tls" not in conf["cluster"]
    assert len(projected_items(nats_pod(r)["volumes"][0])) == 2  # users.conf, cluster.conf
    clients = list(nats_clients(r))
    assert clients
    for where, spec, c in clients:
        env = env_of(c)
        assert not [n for n in env if n.startswith("NATTER_NATS_TLS_")], where
        assert all(u.startswith("nats://") for u in env["NATTER_NATS_URL"].split(",")), where
        assert "nats-tls" not in {v["name"] for v in spec["volumes"]}, where


def test_tls_scenario_configures_servers_and_mounts_their_secrets(tmp_path: Path) -> None:
    r = render_scenario("tls")
    tls = values_for("tls")["nats"]["tls"]
    conf = parsed_conf(r, tmp_path)
    assert conf["tls"]["verify"] is True  # mutual TLS on the client port
    pod = nats_pod(r)
    (nats,) = pod["containers"]
    (mount,) = [m for m in nats["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    items = projected_items(volume)
    for block, secret in ((conf["tls"], tls["client"]), (conf["cluster"]["tls"], tls["cluster"])):
        for setting, key in (
            ("cert_file", "tls.crt"),
            ("key_file", "tls.key"),
            ("ca_file", "ca.crt"),
        ):
            path = block[setting]
            assert path.startswith(mount["mountPath"] + "/"), path
            assert items[path.removeprefix(mount["mountPath"] + "/")] == (secret["secretName"], key)
    keys = [
        item
        for src in volume["projected"]["sources"]
        for item in src.get("secret", {}).get("items", [])
        if item["key"] == "tls.key"
    ]
    assert len(keys) == 2 and all(k["mode"] == 0o440 for k in keys)
    # Probes stay on the plain-HTTP monitoring port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert nats[probe]["httpGet"]["port"] == "monitor"
    assert "https" not in str(conf.get("http_port")) and "https_port" not in conf


def test_tls_scenario_gives_every_component_the_ca_and_its_client_cert() -> None:
    r = render_scenario("tls")
    tls = values_for("tls")["nats"]["tls"]["client"]
    domain = f".{headless(r)}.{r.namespace}.svc"
    seen = set()
    for where, spec, c in nats_clients(r):
        seen.add(c["args"][0])
        env = env_of(c)
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == "nats-tls"]
        assert mount["readOnly"] is True, where
        (volume,) = [v for v in spec["volumes"] if v["name"] == "nats-tls"]
        files = {
            f"{mount['mountPath']}/{path}": ref for path, ref in projected_items(volume).items()
        }
        assert files[env["NATTER_NATS_TLS_CA"]] == (tls["secretName"], "ca.crt"), where
        assert files[env["NATTER_NATS_TLS_CERT"]] == (tls["clientSecretName"], "tls.crt"), where
        assert files[env["NATTER_NATS_TLS_KEY"]] == (tls["clientSecretName"], "tls.key"), where
        # Only the CA of the servers' Secret: never their key.
        assert len(files) == 3, where
        for url in env["NATTER_NATS_URL"].split(","):
            parts = urlsplit(url)
            assert parts.scheme == "tls" and str(parts.hostname).endswith(domain), url
    assert seen == {"gateway", "operator", "bridge"}
    # The Helm test pod speaks HTTP to the gateway only: no NATS settings at all.
    (test_pod,) = r.all("Pod")
    assert not [n for n in env_of(test_pod["spec"]["containers"][0]) if "NATS" in n]


def test_client_tls_without_mutual_tls(tmp_path: Path) -> None:
    r = render(sets=CLIENT_ONLY)
    conf = parsed_conf(r, tmp_path)
    assert "verify" not in conf["tls"] and "tls" not in conf["cluster"]
    for where, spec, c in nats_clients(r):
        env = env_of(c)
        assert env["NATTER_NATS_TLS_CA"].endswith("/ca.crt"), where
        assert "NATTER_NATS_TLS_CERT" not in env and "NATTER_NATS_TLS_KEY" not in env, where
        (volume,) = [v for v in spec["volumes"] if v["name"] == "nats-tls"]
        assert projected_items(volume) == {"ca.crt": ("nats-tls", "ca.crt")}, where
    # Client TLS changes the config, so the servers roll.
    sts = r.one("StatefulSet", "natter-nats")["spec"]["template"]["metadata"]["annotations"]
    plain = render().one("StatefulSet", "natter-nats")["spec"]["template"]["metadata"]
    assert sts["checksum/config"] != plain["annotations"]["checksum/config"]


BAD_TLS = [
    (["nats.tls.client.enabled=true"], "nats.tls.client.secretName"),
    (["nats.tls.cluster.enabled=true"], "nats.tls.cluster.secretName"),
    (["nats.tls.client.verifyClients=true", "nats.tls.client.clientSecretName=c"], "enabled"),
    ([*CLIENT_ONLY, "nats.tls.client.verifyClients=true"], "clientSecretName"),
    ([*CLIENT_ONLY[:1], "nats.tls.client.secretName=Not_A_Name"], "secretName"),
]


@pytest.mark.parametrize(("sets", "mentions"), BAD_TLS, ids=[" ".join(b[0]) for b in BAD_TLS])
def test_incomplete_tls_values_are_refused(sets: list[str], mentions: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    proc = helm("template", "natter", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"{sets} was accepted"
    assert mentions in proc.stderr, proc.stderr


# --- the rendered configuration, run -------------------------------------------------


def local_settings(
    cluster: ChartCluster,
    container: dict[str, Any],
    spec: dict[str, Any],
    directory: Path,
    secrets: ExternalSecrets,
) -> Settings:
    """The settings a container gets from its rendered environment, with its nats-tls
    volume projected into ``directory`` and the pod DNS names made local."""
    env = container_env(cluster.rendered, container)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "nats-tls"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "nats-tls"]
    project(volume, secrets, directory)
    urls = env["NATTER_NATS_URL"].split(",")
    assert len(urls) == len(cluster.nodes)
    local = [
        f"{urlsplit(u).scheme}://127.0.0.1:{n.client}"
        for u, n in zip(urls, cluster.nodes, strict=True)
    ]

    def path(name: str) -> str | None:
        value = env.get(name)
        return value and value.replace(mount["mountPath"], str(directory))

    return Settings(
        nats_url=",".join(local),
        nats_user=env["NATTER_NATS_USER"],
        nats_password=env["NATTER_NATS_PASSWORD"],
        nats_inbox_prefix=env["NATTER_NATS_INBOX_PREFIX"],
        nats_tls_ca=path("NATTER_NATS_TLS_CA"),
        nats_tls_cert=path("NATTER_NATS_TLS_CERT"),
        nats_tls_key=path("NATTER_NATS_TLS_KEY"),
        nats_connect_timeout=2.0,
    )


def test_tls_cluster_runs_the_rendered_config(tmp_path: Path) -> None:
    r = render_scenario("tls")
    secrets = fake_tls_secrets(r)
    creds = secret_data(r, "natter-credentials")
    passwords = {u: creds[f"{u}-password"] for u in ("gateway", "operator")}
    with run_chart_cluster(r, tmp_path / "nats", passwords, secrets) as cluster:
        # Routes: TLS, verified both ways, and a JetStream cluster formed over them.
        for node in cluster.nodes:
            base = f"http://127.0.0.1:{node.monitor}"
            varz = httpx.get(f"{base}/varz", timeout=5).json()
            assert varz["tls_required"] and varz["tls_verify"], node.name
            assert varz["cluster"]["tls_required"] and varz["cluster"]["tls_verify"], node.name
            assert httpx.get(f"{base}/routez", timeout=5).json()["num_routes"] >= 2, node.name
        jsz = httpx.get(f"http://127.0.0.1:{cluster.nodes[0].monitor}/jsz", timeout=5).json()
        assert jsz["meta_cluster"]["leader"] and jsz["meta_cluster"]["cluster_size"] == 3
        pods = {c["args"][0]: (spec, c) for _, spec, c in nats_clients(r)}
        settings = {
            name: local_settings(cluster, pods[name][1], pods[name][0], tmp_path / name, secrets)
            for name in ("gateway", "operator")
        }
        asyncio.run(_clients(settings))


async def _clients(settings: dict[str, Settings]) -> None:
    gateway, operator = settings["gateway"], settings["operator"]
    # As rendered: the CA, the client certificate and tls:// URLs.
    admin = await bus.connect(operator, "tls-operator")
    chat = await bus.connect(gateway, "tls-gateway")
    try:
        room = Room.build("default", "tls", {"replicas": 3})
        await reconcile_room(bus.RoomAdmin(admin), room)  # a stream replicated over TLS routes
        sent = await bus.RoomBus(chat).publish(
            room, b'{"text": "over tls"}', msg_id=uuid.uuid4().hex
        )
        assert (sent.seq, b'{"text": "over tls"}') in await bus.RoomBus(chat).read(
            room, sent.seq, sent.seq
        )
    finally:
        await admin.drain()
        await chat.drain()
    # Refused: without the CA (the servers' certificate is not trusted), with the CA
    # but no client certificate (mutual TLS), and over plain nats://.
    other = Path(gateway.nats_tls_ca or "").parent / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    refused: dict[str, dict[str, Any]] = {
        "no CA": {"nats_tls_ca": None, "nats_tls_cert": None, "nats_tls_key": None},
        "another CA": {"nats_tls_ca": str(other)},
        "no client certificate": {"nats_tls_cert": None, "nats_tls_key": None},
        "plain nats://": {
            "nats_url": gateway.nats_url.replace("tls://", "nats://"),
            "nats_tls_ca": None,
            "nats_tls_cert": None,
            "nats_tls_key": None,
        },
    }
    for why, change in refused.items():
        with pytest.raises(Unavailable):
            nc = await bus.connect(
                gateway.model_copy(update={**change, "nats_connect_timeout": 1.0}), f"tls-{why}"
            )
            await nc.close()
            pytest.fail(f"connected with {why}")
    # The same client settings on nats:// URLs: nats-py upgrades to TLS as the server asks.
    nc = await bus.connect(
        gateway.model_copy(update={"nats_url": gateway.nats_url.replace("tls://", "nats://")}),
        "tls-upgrade",
    )
    try:
        assert nc.is_connected
    finally:
        await nc.close()


# --- docs -----------------------------------------------------------------------------


def _tls_commands() -> list[list[str]]:
    text = README.read_text()
    section = text[text.index("## TLS") :]
    return [
        shlex.split(c)
        for s in steps()
        if s.script in section
        for c in s.commands
        if not c.startswith("#")
    ]


def test_readme_tls_commands_name_what_the_chart_mounts() -> None:
    """k8s/README.md's TLS section creates the Secrets its `helm upgrade` names,
    with the keys the chart mounts, and asks for certificates covering the pods'
    DNS names."""
    commands = _tls_commands()
    created: dict[str, set[str]] = {}
    for cmd in commands:
        if cmd[:3] == ["kubectl", "create", "secret"]:
            assert "--type=kubernetes.io/tls" in cmd, cmd
            keys = {a.split("=", 2)[1] for a in cmd if a.startswith("--from-file=")}
            created[cmd[4]] = keys
    (upgrade,) = [c for c in commands if c[:2] == ["helm", "upgrade"]]
    assert upgrade[2:4] == ["natter", "chart/natter"]
    values = [upgrade[i + 1] for i, a in enumerate(upgrade) if a == "-f"]
    sets = [upgrade[i + 1] for i, a in enumerate(upgrade) if a == "--set"]
    assert values == ["k8s/kind-values.yaml"]
    r = render([KIND_VALUES], sets=sets)
    mounted: dict[str, set[str]] = {}
    for _, _, spec in r.pod_specs():
        for vol in spec["volumes"]:
            if "projected" in vol:
                for secret, key in projected_items(vol).values():
                    mounted.setdefault(secret, set()).add(key)
    external = {s: k for s, k in mounted.items() if r.maybe("Secret", s) is None}
    assert external, "the README's helm upgrade turns on no TLS"
    for secret, keys in external.items():
        assert keys <= created.get(secret, set()), f"README never creates {secret} with {keys}"
    text = README.read_text()
    section = text[text.index("## TLS") :]
    assert f"*.{headless(r)}.default.svc" in section
    for name in re.findall(r"\*\.([a-z0-9-]+)\.default\.svc", section):
        assert name == headless(r)
