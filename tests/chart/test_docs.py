"""k8s/README.md, the kind config, the kind values and skaffold.yaml name the
same things, and those things are what the chart really produces."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from natter.rooms import stream_name
from tests.chart._helm import KIND_VALUES, REPO, load_yaml, render_scenario, selector_matches
from tests.e2e.walkthrough import README, commands, steps

KIND_CONFIG = REPO / "k8s" / "kind-config.yaml"


def _cmd(prefix: str) -> list[str]:
    found = [c for c in commands() if c.startswith(prefix)]
    assert found, f"k8s/README.md has no `{prefix} …` command"
    return shlex.split(found[0])


def test_walkthrough_order() -> None:
    order = [s.tag or s.commands[0].split()[0] + " " + s.commands[0].split()[1] for s in steps()]
    assert order[:3] == ["cluster", "image", "helm install"], order
    assert order[-1] == "skip"
    text = README.read_text()
    for needle in (
        "kubectl apply -f k8s/rooms/general.yaml",
        "k8s/demo-failover.sh",
        "helm test natter",
    ):
        assert needle in text


def test_kind_cluster_shape_and_names() -> None:
    config = load_yaml(KIND_CONFIG)
    roles = [n["role"] for n in config["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") == 3
    assert _cmd("kind create cluster") == [
        "kind",
        "create",
        "cluster",
        "--config",
        "k8s/kind-config.yaml",
    ]
    name = config["name"]
    load = _cmd("kind load docker-image")
    assert load[load.index("--name") + 1] == name
    delete = _cmd("kind delete cluster")
    assert delete[delete.index("--name") + 1] == name
    # skaffold's kind profile activates on the kube context kind creates.
    skaffold = load_yaml(REPO / "skaffold.yaml")
    (profile,) = [p for p in skaffold["profiles"] if p["name"] == "kind"]
    assert profile["activation"] == [{"kubeContext": f"kind-{name}"}]


def test_ui_port_mapping_reaches_the_gateway() -> None:
    config = load_yaml(KIND_CONFIG)
    mappings = [m for n in config["nodes"] for m in n.get("extraPortMappings", [])]
    values = load_yaml(KIND_VALUES)
    svc = render_scenario("kind").one("Service", "natter-gateway")["spec"]
    (port,) = svc["ports"]
    assert (
        svc["type"] == "NodePort" and port["nodePort"] == values["gateway"]["service"]["nodePort"]
    )
    (mapping,) = [m for m in mappings if m["containerPort"] == port["nodePort"]]
    urls = set(re.findall(r"https?://localhost:(\d+)", README.read_text()))
    assert urls == {str(mapping["hostPort"])}
    assert mapping.get("listenAddress", "127.0.0.1") == "127.0.0.1"


def test_image_names_agree() -> None:
    build = _cmd("docker build")
    tag = build[build.index("-t") + 1]
    load = _cmd("kind load docker-image")
    assert load[3] == tag
    image = load_yaml(KIND_VALUES)["image"]
    assert f"{image['repository']}:{image['tag']}" == tag
    assert image["pullPolicy"] == "Never"  # loaded into the nodes, never pulled
    skaffold = load_yaml(REPO / "skaffold.yaml")
    (artifact,) = skaffold["build"]["artifacts"]
    assert artifact["image"] == image["repository"]


def test_helm_install_and_the_names_it_produces() -> None:
    install = _cmd("helm install")
    release, chart = install[2], install[3]
    assert (release, chart) == ("natter", "chart/natter")
    assert install[install.index("-f") + 1] == "k8s/kind-values.yaml"
    assert "-n" not in install and "--namespace" not in install  # namespace "default"
    r = render_scenario("kind", release=release, namespace="default")
    text = README.read_text()
    sts = r.one("StatefulSet", "natter-nats")
    pods = [f"natter-nats-{i}" for i in range(sts["spec"]["replicas"])]
    for pod in re.findall(r"`(natter-nats-\d+)`|delete pod (natter-nats-\d+)", text):
        assert (pod[0] or pod[1]) in pods
    for prefix in re.findall(r"`(natter-[a-z]+)-…`", text):
        r.one("Deployment", prefix)
    # The label selector in the README selects every natter pod and only those.
    (get_pods,) = [c for c in commands() if c.startswith("kubectl get pods -l")]
    key, value = shlex.split(get_pods)[4].split("=")
    for _, meta, _ in r.pod_specs():
        if "helm.sh/hook" not in meta.get("annotations", {}):
            assert selector_matches({"matchLabels": {key: value}}, meta["labels"])


def test_the_room_is_served_where_it_is_created() -> None:
    room = load_yaml(REPO / "k8s" / "rooms" / "general.yaml")
    assert room["metadata"]["name"] == "general"
    r = render_scenario("kind", namespace="default")
    (gw,) = r.one("Deployment", "natter-gateway")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in gw["env"]}
    assert env["NATTER_NAMESPACE"] == room["metadata"]["namespace"]
    text = README.read_text()
    assert f"`{stream_name('default', 'general')}`" in text
    for cmd in commands():
        for ref in re.findall(r"chatroom[/ ]([a-z0-9-]+)", cmd):
            assert ref == "general", cmd


def test_every_path_in_the_docs_exists() -> None:
    for doc in (README, REPO / "chart" / "natter" / "templates" / "NOTES.txt"):
        for path in re.findall(
            r"((?:\.github|\bk8s|\bchart|\bscripts|\btests)/[\w./-]+\w)", doc.read_text()
        ):
            assert (REPO / path).exists(), f"{doc.name} mentions {path}, which does not exist"
    script = REPO / "k8s" / "demo-failover.sh"
    assert script.stat().st_mode & 0o111, "k8s/demo-failover.sh must be executable"


def test_skaffold_deploys_the_chart_with_the_kind_values() -> None:
    skaffold = load_yaml(REPO / "skaffold.yaml")
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert release["name"] == "natter" and release["chartPath"] == "chart/natter"
    assert Path(REPO / release["chartPath"] / "Chart.yaml").exists()
    templates = release["setValueTemplates"]
    assert templates == {
        "image.repository": "{{.IMAGE_REPO_natter}}",
        "image.tag": "{{.IMAGE_TAG_natter}}",
    }
    (profile,) = [p for p in skaffold["profiles"] if p["name"] == "kind"]
    (patch,) = profile["patches"]
    assert patch["path"] == "/deploy/helm/releases/0/valuesFiles"
    assert patch["value"] == ["k8s/kind-values.yaml"]
    assert "skaffold run -p kind" in README.read_text()
