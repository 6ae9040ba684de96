"""`helm install` into a real kube-apiserver (tests/fixtures/kube.py).

No kubelet or controllers run there, so pods never start; what is real is the
API server's validation (OpenAPI, the CRD's schema and CEL rules), admission
(PodSecurity "restricted" included), and Helm's own install and upgrade logic
(the CRD from crds/, lookups that keep the generated credentials).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart._helm import CHART, SCENARIOS, helm, helm_binary, render_scenario
from tests.fixtures.kube import KubeAPI

CRD_NAME = "chatrooms.natter.dev"


def restricted_namespace(kube: KubeAPI, name: str) -> str:
    """A namespace whose pods must meet the PodSecurity "restricted" profile."""
    kube.create_namespace(name)
    kube.kubectl(
        "label",
        "namespace",
        name,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    return name


def kube_helm(kube: KubeAPI, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return helm(*args, env={"KUBECONFIG": str(kube.kubeconfig)}, timeout=300, check=check)


@pytest.fixture(scope="module")
def installed(kube_api: KubeAPI) -> Iterator[tuple[str, str]]:
    """natter installed with its defaults; yields (namespace, the output of helm install)."""
    ns = restricted_namespace(kube_api, "natter-install")
    proc = kube_helm(kube_api, "install", "natter", str(CHART), "--namespace", ns)
    yield ns, proc.stdout
    kube_helm(kube_api, "uninstall", "natter", "--namespace", ns, check=False)


def _manifest_objects(kube: KubeAPI, ns: str) -> list[dict[str, Any]]:
    out = kube_helm(kube, "get", "manifest", "natter", "--namespace", ns).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_install_creates_every_object(kube_api: KubeAPI, installed: tuple[str, str]) -> None:
    ns, output = installed
    assert "STATUS: deployed" in output
    objects = _manifest_objects(kube_api, ns)
    kinds = {o["kind"] for o in objects}
    assert {
        "StatefulSet",
        "Deployment",
        "Service",
        "Secret",
        "ConfigMap",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
    } <= kinds
    for obj in objects:
        namespace = None if obj["kind"].startswith("Cluster") else ns
        got = kube_api.get(obj["kind"].lower(), obj["metadata"]["name"], namespace)
        assert got is not None, f"{obj['kind']}/{obj['metadata']['name']} missing after install"


def test_crd_is_established(kube_api: KubeAPI, installed: tuple[str, str]) -> None:
    kube_api.kubectl(
        "wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s", timeout=90
    )
    crd = kube_api.get("crd", CRD_NAME)
    assert crd is not None and "room" in crd["spec"]["names"]["shortNames"]


def test_hooks_and_sample_rooms_pass_server_side_validation(
    kube_api: KubeAPI,
    installed: tuple[str, str],
) -> None:
    ns, _ = installed
    kube_api.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    tests = kube_helm(
        kube_api,
        "template",
        "natter",
        str(CHART),
        "--namespace",
        ns,
        "--show-only",
        "templates/tests/test-send-message.yaml",
    ).stdout
    proc = kube_api.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=tests)
    assert "Warning" not in proc.stderr, proc.stderr
    for room in sorted((CHART.parents[1] / "k8s" / "rooms").glob("*.yaml")):
        kube_api.kubectl("apply", "--dry-run=server", "-f", str(room))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_passes_server_side_validation(
    kube_api: KubeAPI,
    installed: tuple[str, str],
    scenario: str,
) -> None:
    """Every object of every scenario, dry-run: OpenAPI, CEL, PodSecurity "restricted"."""
    ns = restricted_namespace(kube_api, f"scenario-{scenario}")
    rendered = render_scenario(scenario, namespace=ns)
    for obj in rendered.objects:
        other = obj["metadata"].get("namespace")
        if other and other != ns and kube_api.get("namespace", other) is None:
            restricted_namespace(kube_api, other)
    kube_api.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    objects = []
    for obj in rendered.objects:
        obj = json.loads(json.dumps(obj))
        if not obj["kind"].startswith("Cluster"):
            obj["metadata"].setdefault("namespace", ns)
        objects.append(obj)
    proc = kube_api.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(objects)
    )
    assert "Warning" not in proc.stderr, proc.stderr


def test_notes_name_real_objects(kube_api: KubeAPI, installed: tuple[str, str]) -> None:
    ns, output = installed
    notes = output.split("NOTES:", 1)[1]
    commands = [line.strip() for line in notes.splitlines() if line.strip().startswith("kubectl")]
    assert commands, notes
    names = {(o["kind"].lower(), o["metadata"]["name"]) for o in _manifest_objects(kube_api, ns)}
    checked = 0
    for command in commands:
        for kind, name in re.findall(
            r"\b(statefulset|deployment|service|secret)[/ ]([a-z0-9-]+)", command
        ):
            assert (kind, name) in names, f"NOTES.txt names {kind}/{name}, which the chart lacks"
            checked += 1
        assert f"-n {ns}" in command or "k8s/rooms" in command, command
    assert checked >= 4
    assert f"helm test natter -n {ns}" in notes
    # jwt mode (the default) says how to add a user to the users Secret the gateways mount.
    assert "natter users add NAME --file users.yaml" in notes
    assert ("secret", "natter-users") in names
    gateway = kube_api.get("deployment", "natter-gateway", ns)
    assert gateway is not None
    volumes = gateway["spec"]["template"]["spec"]["volumes"]
    assert {"secretName": "natter-users"}.items() <= next(
        v["secret"] for v in volumes if v["name"] == "users"
    ).items()
    for line in notes.splitlines():
        if line.strip().startswith("helm "):
            helm_cmd = line.split()
            assert helm_cmd[2] == "natter" and helm_cmd[helm_cmd.index("-n") + 1] == ns, line
            if helm_cmd[1] == "upgrade":
                assert helm_cmd[3] == "chart/natter", line
                # --set-file names a real value; --set-json resets the one it merges with.
                assert "auth.usersFile=users.yaml" in line and "auth.users=[]" in line
    # The read-only commands work as written.
    for command in commands:
        if " get " in command and "jsonpath" not in command:
            args = command.split()[1:]
            kube_api.kubectl(*args)


def _secret(kube: KubeAPI, ns: str, name: str) -> dict[str, str]:
    obj = kube.get("secret", name, ns)
    assert obj is not None
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


def test_upgrade_keeps_generated_credentials(kube_api: KubeAPI, installed: tuple[str, str]) -> None:
    ns, _ = installed
    creds = _secret(kube_api, ns, "natter-credentials")
    auth = _secret(kube_api, ns, "natter-nats-auth")
    sts = kube_api.get("statefulset", "natter-nats", ns)
    assert sts is not None
    checksum = sts["spec"]["template"]["metadata"]["annotations"]["checksum/auth"]

    kube_helm(kube_api, "upgrade", "natter", str(CHART), "--namespace", ns)
    assert _secret(kube_api, ns, "natter-credentials") == creds
    assert _secret(kube_api, ns, "natter-nats-auth") == auth
    sts = kube_api.get("statefulset", "natter-nats", ns)
    assert sts is not None
    # Unchanged credentials do not roll the NATS servers.
    assert sts["spec"]["template"]["metadata"]["annotations"]["checksum/auth"] == checksum

    kube_helm(
        kube_api,
        "upgrade",
        "natter",
        str(CHART),
        "--namespace",
        ns,
        "--set",
        "bridges.twitch[0].channel=natter_demo",
        "--set",
        "bridges.twitch[0].room=general",
    )
    after = _secret(kube_api, ns, "natter-credentials")
    assert {k: after[k] for k in creds} == creds
    assert len(after[f"bridge-{ns}-general-password"]) == 32
    assert kube_api.get("deployment", "natter-bridge-twitch-natter-demo", ns) is not None
    users = _secret(kube_api, ns, "natter-nats-auth")["users.conf"]
    assert after[f"bridge-{ns}-general-password"] in users
    kube_helm(kube_api, "rollback", "natter", "1", "--namespace", ns)


def test_notes_add_a_user_as_written(
    kube_api: KubeAPI, installed: tuple[str, str], tmp_path: Path
) -> None:
    """The jwt-mode commands of NOTES.txt, run as written (NAME=alice): fetch the users
    file from its Secret, `natter users add`, and `helm upgrade` it back in."""
    import shlex
    import sys

    from natter.auth import users as users_file

    ns, output = installed
    notes = output.split("NOTES:", 1)[1]
    fetch, add, upgrade = [
        line.strip()
        for line in notes.splitlines()
        if line.strip().startswith(("kubectl -n", "natter users", "helm upgrade"))
        and ("users" in line)
    ]
    get, decode = (shlex.split(part) for part in fetch.split(" > ")[0].split(" | "))
    assert decode == ["base64", "-d"] and fetch.endswith("> users.yaml")
    encoded = kube_api.kubectl(*get[1:]).stdout
    (tmp_path / "users.yaml").write_bytes(base64.b64decode(encoded))
    add_args = shlex.split(add.replace("NAME", "alice"))
    proc = subprocess.run(
        [sys.executable, "-m", "natter", *add_args[1:], "--password-stdin"],
        input="alice-password\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    up = shlex.split(upgrade)
    up[up.index("chart/natter")] = str(CHART)
    proc = subprocess.run(
        [helm_binary(), *up[1:]],
        cwd=tmp_path,
        env={**os.environ, "KUBECONFIG": str(kube_api.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    try:
        stored = users_file.parse(
            yaml.safe_load(_secret(kube_api, ns, "natter-users")["users.yaml"])
        )
        assert list(stored) == ["alice"]
        assert users_file._HASHER.verify(stored["alice"].password_hash, "alice-password")
    finally:
        kube_helm(kube_api, "rollback", "natter", "1", "--namespace", ns)


def test_template_and_install_agree(kube_api: KubeAPI, installed: tuple[str, str]) -> None:
    """What `helm template` renders (the render tests' input) is what install applied."""
    ns, _ = installed
    installed_names = {(o["kind"], o["metadata"]["name"]) for o in _manifest_objects(kube_api, ns)}
    rendered = render_scenario("defaults", namespace=ns)
    hooks = {
        (o["kind"], o["metadata"]["name"])
        for o in rendered.objects
        if "helm.sh/hook" in o["metadata"].get("annotations", {})
    }
    assert {(o["kind"], o["metadata"]["name"]) for o in rendered.objects} - hooks == installed_names
    values = json.loads(
        kube_helm(kube_api, "get", "values", "natter", "-n", ns, "--all", "-o", "json").stdout
    )
    assert values["auth"]["mode"] == "jwt"
