"""natter's NATS clients speak TLS when given a CA (NATTER_NATS_TLS_CA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from natter import bus
from natter.config import Settings
from natter.embedded import NatsCluster
from natter.errors import Unavailable
from natter.reconcile import reconcile_room
from natter.rooms import Room


async def test_tls_only_nats_accepts_natter_with_the_ca_and_refuses_without(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    cluster = NatsCluster(
        tmp_path / "nats",
        1,
        extra_config=f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n  timeout: 2\n}}\n',
    )
    await cluster.start()
    try:
        secure = Settings(nats_url=cluster.nats_url, nats_tls_ca=str(ca_file))
        nc = await bus.connect(secure, "tls-test")
        try:
            room = Room.build("default", "secure", {"replicas": 1})
            await reconcile_room(bus.RoomAdmin(nc), room)
            result = await bus.RoomBus(nc).publish(room, b'{"id":"t1"}', msg_id="t1")
            assert result.seq == 1
        finally:
            await nc.close()
        with pytest.raises(Unavailable):
            await bus.connect(Settings(nats_url=cluster.nats_url, nats_connect_timeout=1), "plain")
    finally:
        await cluster.stop()
