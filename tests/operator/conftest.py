"""Operator tier: the real operator process (``natter operator``) against a real
kube-apiserver (tests/fixtures/kube.py) and a real 3-node NATS cluster.

Every operator here runs as a ServiceAccount bound to exactly the rules in
``operator/rbac-rules.yaml`` — never as cluster admin.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from natter.embedded import NatsCluster
from tests.fixtures.kube import KubeAPI, free_port

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "chart/natter/crds/chatrooms.natter.dev.yaml"
RBAC_RULES = REPO / "operator/rbac-rules.yaml"
SAMPLE_ROOMS = REPO / "k8s/rooms"
NATTER = Path(sys.executable).parent / "natter"
RESYNC_SECONDS = 2.0


def rbac_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(RBAC_RULES.read_text())
    return rules


@pytest.fixture(scope="session")
def chatroom_crd(kube_api: KubeAPI) -> KubeAPI:
    """The API server with the ChatRoom CRD installed and established."""
    kube_api.apply(CRD)
    kube_api.kubectl(
        "wait", "--for=condition=Established", "crd/chatrooms.natter.dev", "--timeout=60s"
    )
    return kube_api


class OperatorProcess:
    """One ``natter operator`` process; its JSON log lines go to ``log_path``."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.liveness_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {**self.env, "NATTER_OPERATOR_LIVENESS_PORT": str(self.liveness_port)}
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(NATTER), "operator", *self.args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthz(self) -> dict[str, Any] | None:
        """The liveness endpoint's answer; raises if the process has exited."""
        if not self.running:
            code = self.proc.returncode if self.proc else None
            raise AssertionError(f"operator exited with {code}:\n{self.log_tail()}")
        try:
            response = httpx.get(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1.0)
        except httpx.HTTPError:
            return None
        result: dict[str, Any] = response.json()
        return result if response.status_code == 200 else None

    async def wait_live(self, within: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while (answer := self.healthz()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"operator not live in {within}s:\n{self.log_tail()}")
            await asyncio.sleep(0.1)
        return answer

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (kopf runs its cleanup: drains NATS), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                lines.append({"event": line, "_not_json": True})
        return lines

    def log_tail(self, count: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-count:])


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def operator_kubeconfig(chatroom_crd: KubeAPI, kube_namespace: str) -> Path:
    """A kubeconfig for ServiceAccount ``natter-operator`` in the test namespace,
    bound (ClusterRole) to exactly the rules in operator/rbac-rules.yaml."""
    return chatroom_crd.service_account_kubeconfig(
        kube_namespace, "natter-operator", cluster_rules=rbac_rules()
    )


@pytest.fixture
def start_operator(
    chatroom_crd: KubeAPI,
    kube_namespace: str,
    operator_kubeconfig: Path,
    tmp_path: Path,
    nats_cluster: NatsCluster,
) -> Iterator[OperatorFactory]:
    """``start_operator(nats_url=None, *, all_namespaces=False, env=None)`` starts
    ``natter operator`` as the ServiceAccount, against ``nats_cluster`` unless told
    otherwise. On teardown (before the NATS cluster stops) the test namespace's
    ChatRooms are deleted while an operator still runs, then every operator stops."""
    started: list[OperatorProcess] = []

    def start(
        nats_url: str | None = None,
        *,
        all_namespaces: bool = False,
        env: dict[str, str] | None = None,
    ) -> OperatorProcess:
        nats_url = nats_url or nats_cluster.nats_url
        args = ["--all-namespaces"] if all_namespaces else ["--namespace", kube_namespace]
        full_env = {
            **os.environ,
            "KUBECONFIG": str(operator_kubeconfig),
            "NATTER_NATS_URL": nats_url,
            "NATTER_LOG_FORMAT": "json",
            "NATTER_OPERATOR_RESYNC_SECONDS": str(RESYNC_SECONDS),
            "NATTER_OPERATOR_RETRY_SECONDS": "1",
            **(env or {}),
        }
        operator = OperatorProcess(args, full_env, tmp_path / f"operator-{len(started)}.log")
        started.append(operator.start())
        return operator

    yield start
    try:
        if any(op.running for op in started):
            chatroom_crd.kubectl(
                "delete",
                "chatrooms",
                "--all",
                "-n",
                kube_namespace,
                "--timeout=30s",
                check=False,
                timeout=60,
            )
    finally:
        for operator in started:
            operator.stop()
        _drop_finalizers(chatroom_crd, kube_namespace)


def _drop_finalizers(kube: KubeAPI, namespace: str) -> None:
    """Leave nothing that a later operator (e.g. --all-namespaces) would pick up."""
    names = kube.kubectl("get", "chatrooms", "-n", namespace, "-o", "name").stdout.split()
    for name in names:
        kube.kubectl(
            "patch",
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kube.kubectl("delete", name, "-n", namespace, "--wait=false", check=False)


# --- helpers the tests share ------------------------------------------------------------


def room_manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "natter.dev/v1alpha1",
        "kind": "ChatRoom",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def sample_rooms(namespace: str) -> list[dict[str, Any]]:
    """The manifests in k8s/rooms, moved into ``namespace``."""
    docs = []
    for path in sorted(SAMPLE_ROOMS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                doc["metadata"]["namespace"] = namespace
                docs.append(doc)
    return docs


def condition(room: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((room or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            result: dict[str, Any] = cond
            return result
    return None


def ready_room(kube: KubeAPI, namespace: str, name: str) -> dict[str, Any] | None:
    """The room when Ready=True for its current generation, else None."""
    room = kube.get("chatroom", name, namespace)
    ready = condition(room, "Ready")
    if (
        room
        and ready
        and ready["status"] == "True"
        and ready.get("observedGeneration") == (room["metadata"]["generation"])
    ):
        return room
    return None


def events_for(kube: KubeAPI, namespace: str, name: str) -> list[dict[str, Any]]:
    out = kube.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "-o",
        "json",
        f"--field-selector=involvedObject.kind=ChatRoom,involvedObject.name={name}",
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def reasons(kube: KubeAPI, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in events_for(kube, namespace, name)]


class Stopwatch:
    """Elapsed seconds, for the timings the closing note reports."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start
