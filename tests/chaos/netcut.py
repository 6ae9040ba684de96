"""A real network partition for one NATS node: its own network namespace and veth pairs.

The node runs inside namespace ``chaos-<n>`` (``ip netns exec``), wired to the
host by two veth pairs:

* the *client* pair (``10.213.<n>.0/30``) carries gateway connections and the
  monitoring port; it is never cut, so gateways can keep talking to the node;
* the *route* pair (``10.214.<n>.0/30``) carries the cluster routes between this
  node and the two on the host. :meth:`SplitNet.cut` takes its link down: packets
  are dropped silently in both directions (no RST, no ICMP), which is what a
  switch failure or a cable pull looks like to TCP; :meth:`SplitNet.heal` brings
  it back.

The other nodes listen for routes on the host end of the route pair, and for
clients on loopback, so only the isolated node's routes cross the cut.
Needs root and iproute2; only addresses in namespaces created here are used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from natter.embedded import NatsCluster

#: Subnet index range tried for the /30s (10.213.<n>.0 and 10.214.<n>.0).
_INDEXES = range(1, 250)


class NetError(RuntimeError):
    """The namespace or its links could not be set up."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def available() -> str | None:
    """Why partitions cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2 (the ip command) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    return None


@dataclass
class SplitNet:
    """One namespace with a client link and a route link to the host."""

    index: int = 0
    ns: str = ""
    links: dict[str, str] = field(default_factory=dict)

    @property
    def host_client_ip(self) -> str:
        return f"10.213.{self.index}.1"

    @property
    def ns_client_ip(self) -> str:
        return f"10.213.{self.index}.2"

    @property
    def host_route_ip(self) -> str:
        return f"10.214.{self.index}.1"

    @property
    def ns_route_ip(self) -> str:
        return f"10.214.{self.index}.2"

    def create(self) -> SplitNet:
        start = os.getpid() % len(_INDEXES)
        for offset in range(len(_INDEXES)):
            index = _INDEXES[(start + offset) % len(_INDEXES)]
            if self._try(index):
                return self
        raise NetError("no free namespace/subnet index for a partition")

    def _try(self, index: int) -> bool:
        ns = f"chaos-{index}"
        if _ip("netns", "add", ns, check=False).returncode != 0:
            return False  # taken (another run); try the next index
        self.index, self.ns = index, ns
        self.links = {"client": f"chaos{index}c", "route": f"chaos{index}r"}
        try:
            _ip("-n", ns, "link", "set", "lo", "up")
            for kind, subnet in (("client", 213), ("route", 214)):
                host, inner = self.links[kind], f"{self.links[kind]}n"
                _ip("link", "add", host, "type", "veth", "peer", "name", inner)
                _ip("link", "set", inner, "netns", ns)
                _ip("addr", "add", f"10.{subnet}.{index}.1/30", "dev", host)
                _ip("-n", ns, "addr", "add", f"10.{subnet}.{index}.2/30", "dev", inner)
                _ip("link", "set", host, "up")
                _ip("-n", ns, "link", "set", inner, "up")
        except NetError:
            self.destroy()
            raise
        return True

    def cut(self) -> None:
        """Drop every packet between the isolated node and the others, both ways."""
        _ip("link", "set", self.links["route"], "down")

    def heal(self) -> None:
        _ip("link", "set", self.links["route"], "up")

    def destroy(self) -> None:
        if not self.ns:
            return
        _ip("netns", "del", self.ns, check=False)  # takes the namespace ends with it
        for host in self.links.values():
            _ip("link", "del", host, check=False)
        self.ns = ""

    def isolate_last(self, cluster: NatsCluster) -> str:
        """Rewire ``cluster`` (before start) so its last node lives in this namespace."""
        *others, lone = cluster.nodes
        for node in others:
            node.cluster_host = self.host_route_ip
        lone.host = self.ns_client_ip
        lone.cluster_host = self.ns_route_ip
        lone.netns = self.ns
        return lone.name
