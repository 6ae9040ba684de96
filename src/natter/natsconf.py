"""NATS server settings shared by ``natter up`` and the Helm chart.

``SHARED`` is the single source for cluster-wide behaviour (durability, limits,
lame duck); ``render`` writes one node's configuration file for the embedded
cluster. The chart's ``values.yaml`` carries the same values and a chart test
checks that they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natter.rooms import parse_duration

CLUSTER_NAME = "natter"

#: Settings every natter NATS node runs with, embedded or in Kubernetes.
SHARED: dict[str, Any] = {
    # Cap on one NATS message; a room's maxMessageSize must fit inside it.
    "max_payload": 1048576,
    # A lame-duck node stops accepting clients and moves them off over this window.
    "lame_duck_duration": "30s",
    "lame_duck_grace_period": "5s",
    # Drop a client that cannot take writes for this long (slow consumer).
    "write_deadline": "10s",
    "jetstream": {
        # fsync the file store this often. "always" fsyncs every write before the ack,
        # so an acknowledged message is on the disks of a majority of its replicas and
        # survives power loss of every node at once (docs/durability.md). A duration
        # such as "2m" trades that for throughput: replication alone then carries an
        # ack through process and single-node crashes, not through a shared power cut.
        "sync_interval": "always",
        "max_memory_store": 268435456,
        "max_file_store": 10737418240,
    },
}


def valid_sync_interval(value: str) -> str:
    """``value`` if JetStream accepts it as ``sync_interval``: ``always`` or a positive duration."""
    text = value.strip()
    if text == "always":
        return text
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ValueError(f"{value!r} is not 'always' or a duration such as 1s, 30s or 2m")
    return text


@dataclass(frozen=True)
class NodePorts:
    client: int
    cluster: int
    monitor: int


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def render(
    name: str,
    ports: NodePorts,
    routes: Sequence[int | str],
    store_dir: Path,
    *,
    host: str = "127.0.0.1",
    cluster_host: str | None = None,
    sync_interval: str | None = None,
    extra: str = "",
) -> str:
    """The configuration file of one embedded node.

    ``routes`` are the other nodes' cluster ports on ``host``, or ``"addr:port"``
    strings; ``cluster_host`` is where this node listens for routes (default ``host``).
    """
    js = dict(SHARED["jetstream"])
    if sync_interval is not None:
        js["sync_interval"] = sync_interval
    route_urls = ", ".join(
        f'"nats-route://{route if isinstance(route, str) else f"{host}:{route}"}"'
        for route in routes
    )
    top = "\n".join(f"{key}: {_value(val)}" for key, val in SHARED.items() if key != "jetstream")
    js_lines = "\n".join(f"  {key}: {_value(val)}" for key, val in js.items())
    cluster = (
        f"""cluster {{
  name: "{CLUSTER_NAME}"
  listen: "{cluster_host or host}:{ports.cluster}"
  routes: [{route_urls}]
  connect_retries: 120
}}"""
        if routes
        else "# a single node: no cluster block (JetStream clustering needs routes)"
    )
    return f"""# natter embedded NATS node {name} (generated; edits are overwritten)
server_name: "{name}"
listen: "{host}:{ports.client}"
http: "{host}:{ports.monitor}"
{top}

jetstream {{
  store_dir: "{store_dir}"
{js_lines}
}}

{cluster}
{extra}
"""
