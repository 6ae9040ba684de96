from __future__ import annotations

import subprocess
from pathlib import Path

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
