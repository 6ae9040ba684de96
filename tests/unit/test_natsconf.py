from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from natter import natsconf
from natter.embedded import nats_server_binary


def test_rendered_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    ports = natsconf.NodePorts(14222, 16222, 18222)
    conf = tmp_path / "n.conf"
    conf.write_text(
        natsconf.render("nats-0", ports, [16223, 16224], tmp_path / "js", sync_interval="always")
    )
    text = conf.read_text()
    assert 'sync_interval: "always"' in text and "routes:" in text
    # nats-server -t tests a configuration file without starting.
    check = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr + check.stdout


def test_single_node_has_no_cluster_block(tmp_path: Path) -> None:
    text = natsconf.render("nats-0", natsconf.NodePorts(1, 2, 3), [], tmp_path)
    assert "cluster {" not in text


def test_routes_may_name_their_own_addresses(tmp_path: Path) -> None:
    text = natsconf.render(
        "nats-2",
        natsconf.NodePorts(1, 2, 3),
        ["10.0.0.1:16222", 16223],
        tmp_path,
        host="10.0.0.2",
        cluster_host="10.0.1.2",
    )
    assert 'listen: "10.0.1.2:2"' in text
    assert '"nats-route://10.0.0.1:16222", "nats-route://10.0.0.2:16223"' in text


def test_sync_interval_defaults_to_always_and_is_validated() -> None:
    assert natsconf.SHARED["jetstream"]["sync_interval"] == "always"
    assert natsconf.valid_sync_interval("1s") == "1s"
    assert natsconf.valid_sync_interval("always") == "always"
    for bad in ("0", "never", "-1s", ""):
        with pytest.raises(ValueError):
            natsconf.valid_sync_interval(bad)
