"""The whole kind walkthrough (k8s/README.md), run as written, on a real kind
cluster: create it (pytest-kubernetes, with k8s/kind-config.yaml), then every
```bash block of the README in order — build and load the image, helm install,
apply a room, chat over HTTP, kill the room's stream leader, helm test — while
a client keeps sending, and no acknowledged message may be lost.

Needs Docker, kind and kubectl; skips with the reason where they are missing
(.github/workflows/kind.yml runs it where they are not).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.walkthrough import REPO, Step, steps

KIND_CONFIG = REPO / "k8s" / "kind-config.yaml"
UI = "http://localhost:8080"
ROOM = "general"

pytestmark = [pytest.mark.kind, pytest.mark.slow, pytest.mark.timeout(3600)]


def _missing() -> str | None:
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    proc = subprocess.run(
        ["docker", "info"], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        return f"no Docker engine answers `docker info`: {proc.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def kind_cluster() -> Iterator[Any]:
    reason = _missing()
    if reason:
        pytest.skip(f"the kind walkthrough needs Docker, kind and kubectl: {reason}")
    from pytest_kubernetes.options import ClusterOptions
    from pytest_kubernetes.providers import select_provider_manager

    (create,) = [s for s in steps() if s.tag == "cluster"]
    assert create.commands == [f"kind create cluster --config {KIND_CONFIG.relative_to(REPO)}"]
    manager = select_provider_manager("kind")(provider_config=str(KIND_CONFIG))
    manager.create(ClusterOptions(provider_config=KIND_CONFIG, cluster_timeout=900), timeout=300)
    try:
        yield manager
    finally:
        manager.delete()


def _env(cluster: Any) -> dict[str, str]:
    from tests.chart._helm import helm_binary

    path = f"{Path(helm_binary()).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "PATH": path}


def _run(step: Step, env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step.script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, f"README step failed:\n{step.script}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


class Sender:
    """Posts a message to the room every few milliseconds; remembers what was acked."""

    def __init__(self) -> None:
        self.acked: dict[int, str] = {}
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(base_url=UI, timeout=20) as client:
            while not self._stop.is_set():
                text = f"e2e {uuid.uuid4().hex}"
                try:
                    r = client.post(f"/api/rooms/{ROOM}/messages", json={"text": text})
                except httpx.HTTPError:
                    self.failed += 1
                    continue
                if r.status_code == 201:
                    self.acked[int(r.json()["seq"])] = text
                else:
                    self.failed += 1
                self._stop.wait(0.05)

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _stored(first: int) -> dict[int, str]:
    stored: dict[int, str] = {}
    after = first - 1
    with httpx.Client(base_url=UI, timeout=20) as client:
        while True:
            page = client.get(f"/api/rooms/{ROOM}/messages", params={"after": after, "limit": 500})
            page.raise_for_status()
            body = page.json()
            messages = body.get("messages", []) if isinstance(body, dict) else body
            if not messages:
                return stored
            for m in messages:
                stored[int(m["seq"])] = m["text"]
            after = max(int(m["seq"]) for m in messages)


def test_walkthrough(kind_cluster: Any) -> None:
    env = _env(kind_cluster)
    run = [s for s in steps() if s.tag not in ("cluster", "skip")]
    failover = next(s for s in run if any("demo-failover.sh" in c for c in s.commands))
    for step in run:
        if step is failover:
            leader_before = kind_cluster.kubectl(
                ["get", "chatroom", ROOM, "-o", "jsonpath={.status.stream.leader}"], as_dict=False
            ).strip()
            assert leader_before.startswith("natter-nats-")
            with Sender() as sender:
                out = _run(step, env)
            assert re.search(r"read back, 0 lost$", out, re.M), out
            assert sender.acked, "no message was acknowledged while the leader was replaced"
            stored = _stored(min(sender.acked))
            lost = {seq for seq, text in sender.acked.items() if stored.get(seq) != text}
            assert not lost, f"{len(lost)} acknowledged messages lost: {sorted(lost)[:20]}"
            continue
        _run(step, env)
        if any(c.startswith("kubectl apply -f k8s/rooms/") for c in step.commands):
            # The UI is served where the README says.
            page = httpx.get(f"{UI}/", timeout=20)
            assert page.status_code == 200 and "<html" in page.text.lower()
    # Every pod the chart made is running again, non-root.
    pods = kind_cluster.kubectl(
        ["get", "pods", "-l", "app.kubernetes.io/instance=natter", "-o", "json"]
    )
    for pod in pods["items"]:
        if pod["metadata"].get("annotations", {}).get("helm.sh/hook"):
            continue
        assert pod["status"]["phase"] == "Running", pod["metadata"]["name"]
