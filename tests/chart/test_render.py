"""Properties of what chart/natter renders, for the defaults and every scenario."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.chart import _natsconf as natsconf_reader
from tests.chart._helm import (
    SCENARIOS,
    Rendered,
    containers,
    env_of,
    parse_duration,
    render,
    render_scenario,
    selector_matches,
    values_for,
)

ALL = sorted(SCENARIOS)


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render_scenario("defaults")


def pod_labels(r: Rendered, component: str) -> list[dict[str, str]]:
    return [
        meta["labels"]
        for _, meta, _ in r.pod_specs()
        if meta["labels"].get("app.kubernetes.io/component") == component
    ]


# --- NATS ---------------------------------------------------------------------------


def test_nats_statefulset_shape(default: Rendered) -> None:
    sts = default.one("StatefulSet", "natter-nats")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["serviceName"] == "natter-nats-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    headless = default.one("Service", "natter-nats-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert selector_matches(
        {"matchLabels": headless["spec"]["selector"]}, spec["template"]["metadata"]["labels"]
    )
    assert selector_matches(spec["selector"], spec["template"]["metadata"]["labels"])
    client = default.one("Service", "natter-nats")
    assert client["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in client["spec"]["ports"]] == [4222]


def test_nats_jetstream_on_persistent_volumes(default: Rendered) -> None:
    sts = default.one("StatefulSet", "natter-nats")["spec"]
    (claim,) = sts["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "12Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    (nats,) = sts["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in nats["volumeMounts"]}
    conf = default.config("natter-nats-config", "nats.conf")
    store = re.search(r'store_dir:\s*"([^"]+)"', conf)
    assert store and mounts["data"] == store.group(1)
    assert sts["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }


def test_volume_is_larger_than_the_file_store() -> None:
    for name in ALL:
        values = values_for(name)["nats"]
        size = values["persistence"]["size"]
        number, unit = re.fullmatch(r"(\d+)(Gi|Mi|Ti)", size).groups()  # type: ignore[union-attr]
        volume = int(number) * {"Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[unit]
        assert values["config"]["jetstream"]["maxFileStore"] < volume, name


def test_nats_routes_name_every_server_by_pod_dns() -> None:
    for name in ALL:
        r = render_scenario(name, namespace="chat")
        sts = r.all("StatefulSet")[0]
        base, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
        headless = sts["spec"]["serviceName"]
        cluster_conf = r.config(
            f"{r.all('Secret')[0]['metadata']['name'].removesuffix('-credentials')}-nats-auth",
            "cluster.conf",
        )
        hosts = re.findall(r'"nats://route:[^@"]+@([^":]+):(\d+)"', cluster_conf)
        assert hosts == [(f"{base}-{i}.{headless}.chat.svc", "6222") for i in range(replicas)], name


def test_nats_probes_use_jetstream_aware_health(default: Rendered) -> None:
    (nats,) = default.one("StatefulSet", "natter-nats")["spec"]["template"]["spec"]["containers"]
    assert nats["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert nats["readinessProbe"]["httpGet"]["path"] == "/healthz?js-server-only=true"
    assert nats["livenessProbe"]["httpGet"]["path"] == "/healthz?js-enabled-only=true"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert nats[probe]["httpGet"]["port"] == "monitor"
    # The startup probe must allow a long JetStream catch-up before liveness applies.
    startup = nats["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


def test_nats_lame_duck_fits_the_grace_period() -> None:
    for name in ALL:
        r = render_scenario(name)
        sts = r.all("StatefulSet")[0]
        pod = sts["spec"]["template"]["spec"]
        (nats,) = pod["containers"]
        assert nats["lifecycle"]["preStop"]["exec"]["command"] == [
            "nats-server",
            "--signal",
            "ldm=/var/run/nats/nats.pid",
        ]
        conf = r.config(f"{sts['metadata']['name']}-config", "nats.conf")
        assert 'pid_file: "/var/run/nats/nats.pid"' in conf
        ldm = parse_duration(re.search(r'lame_duck_duration: "([^"]+)"', conf).group(1))  # type: ignore[union-attr]
        grace = parse_duration(re.search(r'lame_duck_grace_period: "([^"]+)"', conf).group(1))  # type: ignore[union-attr]
        assert ldm >= 30, "nats-server refuses a lame duck duration under 30s"
        assert pod["terminationGracePeriodSeconds"] >= ldm + grace + 10, name


def test_nats_anti_affinity() -> None:
    soft = render_scenario("defaults").one("StatefulSet", "natter-nats")["spec"]["template"]["spec"]
    (term,) = soft["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selector_matches(
        term["podAffinityTerm"]["labelSelector"], pod_labels(render_scenario("defaults"), "nats")[0]
    )
    hard = render_scenario("scaled-bridges").one("StatefulSet", "chat-nats")["spec"]["template"][
        "spec"
    ]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in hard["affinity"]["podAntiAffinity"]
    none = render_scenario("minimal").one("StatefulSet", "natter-nats")["spec"]["template"]["spec"]
    assert "affinity" not in none


def test_disruption_budgets(default: Rendered) -> None:
    for name, component in (("natter-nats", "nats"), ("natter-gateway", "gateway")):
        pdb = default.one("PodDisruptionBudget", name)
        assert pdb["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in pdb["spec"]
        targets = [
            labels
            for _, meta, _ in default.pod_specs()
            if selector_matches(pdb["spec"]["selector"], labels := meta["labels"])
        ]
        assert targets and all(t["app.kubernetes.io/component"] == component for t in targets)
    assert render_scenario("minimal").all("PodDisruptionBudget") == []


# --- gateway ------------------------------------------------------------------------


def test_gateway_deployment(default: Rendered) -> None:
    dep = default.one("Deployment", "natter-gateway")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (gw,) = pod["containers"]
    assert gw["args"] == ["gateway"]
    assert gw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = env_of(gw)
    assert env["NATTER_AUTH"] == "jwt"
    assert env["NATTER_JWT_SECRET"] == {
        "secretKeyRef": {"name": "natter-credentials", "key": "jwt-secret"}
    }
    assert env["NATTER_HOST"] == "0.0.0.0"
    assert env["NATTER_PORT"] == "8080" and gw["ports"] == [{"name": "http", "containerPort": 8080}]
    assert env["NATTER_NAMESPACE"] == "default"
    assert env["NATTER_LOG_FORMAT"] == "json"
    assert env["NATTER_NATS_URL"] == ",".join(
        f"nats://natter-nats-{i}.natter-nats-headless.default.svc:4222" for i in range(3)
    )
    # SIGTERM arrives after the preStop sleep; the drain must end inside the grace period.
    drain = float(env["NATTER_SHUTDOWN_GRACE"])
    sleep = gw["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > sleep + drain
    assert pod["automountServiceAccountToken"] is False


def test_gateway_service_types() -> None:
    svc = render_scenario("defaults").one("Service", "natter-gateway")["spec"]
    assert svc["type"] == "LoadBalancer"
    assert svc["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    kind = render_scenario("kind").one("Service", "natter-gateway")["spec"]
    assert kind["type"] == "NodePort"
    assert kind["ports"][0]["nodePort"] == 30080


def test_gateway_autoscaling() -> None:
    assert render_scenario("defaults").all("HorizontalPodAutoscaler") == []
    r = render_scenario("scaled-bridges")
    hpa = r.one("HorizontalPodAutoscaler", "chat-gateway")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "chat-gateway",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    # With an autoscaler the Deployment must not fight it over replicas.
    assert "replicas" not in r.one("Deployment", "chat-gateway")["spec"]


# --- operator -----------------------------------------------------------------------


def test_operator_deployment(default: Rendered) -> None:
    dep = default.one("Deployment", "natter-operator")["spec"]
    assert dep["replicas"] == 1
    assert dep["strategy"] == {"type": "Recreate"}
    pod = dep["template"]["spec"]
    assert pod["serviceAccountName"] == "natter-operator"
    default.one("ServiceAccount", "natter-operator")
    (op,) = pod["containers"]
    assert op["args"] == ["operator", "--all-namespaces"]
    assert env_of(op)["NATTER_NATS_USER"] == "operator"
    scoped = render_scenario("scaled-bridges", namespace="chatns").one(
        "Deployment", "chat-operator"
    )
    assert scoped["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "operator",
        "--namespace",
        "chatns",
    ]
    assert render_scenario("minimal").maybe("Deployment", "natter-operator") is None


def test_rbac_is_least_privilege() -> None:
    for name in ALL:
        r = render_scenario(name)
        roles = r.all("ClusterRole") + r.all("Role")
        for role in roles:
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], (name, rule)
                assert "*" not in rule.get("apiGroups", []), (name, rule)
                assert not {"secrets", "pods", "configmaps"} & set(rule["resources"]), (name, rule)
                assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
                    rule["verbs"]
                )
        for binding in r.all("ClusterRoleBinding") + r.all("RoleBinding"):
            role_names = {
                x["metadata"]["name"] for x in roles if x["kind"] == binding["roleRef"]["kind"]
            }
            assert binding["roleRef"]["name"] in role_names
            for subject in binding["subjects"]:
                assert subject["kind"] == "ServiceAccount"
                r.one("ServiceAccount", subject["name"])


def test_operator_scope_decides_role_kind() -> None:
    cluster = render_scenario("defaults")
    (cr,) = cluster.all("ClusterRole")
    resources = {res for rule in cr["rules"] for res in rule["resources"]}
    assert {"chatrooms", "chatrooms/status", "customresourcedefinitions"} <= resources
    assert cluster.all("Role") == []
    ns = render_scenario("scaled-bridges")
    (cr,) = ns.all("ClusterRole")
    assert {res for rule in cr["rules"] for res in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    (role,) = ns.all("Role")
    assert "chatrooms" in {res for rule in role["rules"] for res in rule["resources"]}


# --- bridges ------------------------------------------------------------------------


def test_twitch_bridges_one_deployment_each() -> None:
    r = render_scenario("scaled-bridges", namespace="chatns")
    bridges = {
        d["metadata"]["name"]: d
        for d in r.all("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "bridge"
    }
    assert set(bridges) == {"chat-bridge-twitch-some-streamer", "chat-bridge-twitch-another-one"}
    one = bridges["chat-bridge-twitch-some-streamer"]["spec"]
    assert one["replicas"] == 1 and one["strategy"] == {"type": "Recreate"}
    (c,) = one["template"]["spec"]["containers"]
    assert c["args"] == ["bridge", "twitch", "--channel", "Some_Streamer", "--room", "general"]
    assert c["envFrom"] == [{"secretRef": {"name": "twitch-some-streamer"}}]
    env = env_of(c)
    assert env["NATTER_NAMESPACE"] == "community"  # gateway.roomNamespace is the default
    assert env["NATTER_NATS_USER"] == "bridge-community-general"  # natsauth.bridge_user
    assert env["NATTER_NATS_INBOX_PREFIX"] == "_INBOX_bridge-community-general"
    (c2,) = bridges["chat-bridge-twitch-another-one"]["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in c2
    # Each bridge's selector picks only its own pod.
    for name, dep in bridges.items():
        matched = [
            m["labels"]
            for _, m, _ in r.pod_specs()
            if selector_matches(dep["spec"]["selector"], m["labels"])
        ]
        assert len(matched) == 1, name


def test_duplicate_bridge_names_are_refused() -> None:
    from tests.chart._helm import RenderError

    with pytest.raises(RenderError, match="two bridges are named"):
        render(
            sets=[
                "bridges.twitch[0].channel=abc",
                "bridges.twitch[0].room=r",
                "bridges.twitch[1].channel=abc",
                "bridges.twitch[1].room=s",
            ]
        )


# --- credentials and NATS users -----------------------------------------------------


def _users(r: Rendered, prefix: str) -> dict[str, dict[str, Any]]:
    conf = natsconf_reader.parse(r.config(f"{prefix}-nats-auth", "users.conf"), Path("."))
    return {
        u["user"]: {
            "password": u["password"],
            "publish": u["permissions"].get("publish", {}).get("allow", []),
            "subscribe": u["permissions"].get("subscribe", {}).get("allow", []),
        }
        for u in conf["authorization"]["users"]
    }


def test_every_nats_client_has_its_own_user() -> None:
    import base64

    for name in ALL:
        r = render_scenario(name)
        prefix = r.all("StatefulSet")[0]["metadata"]["name"].removesuffix("-nats")
        users = _users(r, prefix)
        creds = r.one("Secret", f"{prefix}-credentials")["data"]
        seen = set()
        for where, _, spec in r.pod_specs():
            for c in containers(spec):
                env = env_of(c)
                if "NATTER_NATS_USER" not in env:
                    continue
                user = env["NATTER_NATS_USER"]
                ref = env["NATTER_NATS_PASSWORD"]["secretKeyRef"]
                assert ref["name"] == f"{prefix}-credentials", where
                assert base64.b64decode(creds[ref["key"]]).decode() == users[user]["password"], (
                    where
                )
                seen.add(user)
        assert seen == set(users), f"{name}: users without a client or clients without a user"
        assert len({u["password"] for u in users.values()}) == len(users)


def test_nats_permissions_are_scoped(default: Rendered) -> None:
    users = _users(default, "natter")
    gw, op = users["gateway"], users["operator"]
    assert not any(
        s.startswith(
            (
                "$JS.API.STREAM.CREATE",
                "$JS.API.STREAM.DELETE",
                "$JS.API.STREAM.UPDATE",
                "$JS.API.STREAM.PURGE",
                "$KV.",
            )
        )
        for s in gw["publish"]
    )
    assert "chat.default.>" in gw["publish"] and ">" not in gw["publish"]
    assert not any(s.startswith(("chat.", "chatx.")) for s in op["publish"] + op["subscribe"])
    for name, user in users.items():
        assert ">" not in user["publish"] + user["subscribe"]
        assert "$JS.API.>" not in user["publish"]
        # Replies only under the user's own inbox prefix, never the shared _INBOX.
        inboxes = [s for s in user["subscribe"] if s.startswith("_INBOX")]
        assert inboxes == [f"_INBOX_{name}.>"], name
    assert not any(s.startswith("chat.") for s in gw["subscribe"])
    r = render_scenario("scaled-bridges")
    bridge = _users(r, "chat")["bridge-community-random"]
    assert [s for s in bridge["publish"] if s.startswith("chat.")] == ["chat.community.random.>"]


def test_secrets_are_generated_and_secret(default: Rendered) -> None:
    import base64

    creds = default.one("Secret", "natter-credentials")
    data = {k: base64.b64decode(v).decode() for k, v in creds["data"].items()}
    assert set(data) == {"gateway-password", "operator-password", "route-password", "jwt-secret"}
    assert all(len(v) >= 32 for v in data.values()) and len(data["jwt-secret"]) >= 64
    # Credentials appear in Secrets only, never in a ConfigMap or an env value.
    for cm in default.all("ConfigMap"):
        text = str(cm["data"])
        assert not any(v in text for v in data.values()), cm["metadata"]["name"]
    for where, _, spec in default.pod_specs():
        for c in containers(spec):
            assert not any(v in str(env_of(c)) for v in data.values()), where
    # Two renders (two installs) never share credentials.
    again = render(sets=["commonLabels.render=second"]).one("Secret", "natter-credentials")["data"]
    assert again["jwt-secret"] != creds["data"]["jwt-secret"]


def test_secret_and_configmap_references_resolve() -> None:
    for name in ALL:
        r = render_scenario(name)
        secrets = {
            s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})}
            for s in r.all("Secret")
        }
        # The only Secrets the chart mounts without rendering: nats.tls's, which the
        # user (or cert-manager) provides as kubernetes.io/tls with ca.crt.
        tls = values_for(name)["nats"]["tls"]
        provided = {
            tls[kind][key]
            for kind, key in (
                ("client", "secretName"),
                ("client", "clientSecretName"),
                ("cluster", "secretName"),
            )
            if tls[kind][key]
        }
        for secret in provided:
            assert secret not in secrets, (name, secret)
            secrets[secret] = dict.fromkeys(("tls.crt", "tls.key", "ca.crt"), "")
        configmaps = {c["metadata"]["name"]: c["data"] for c in r.all("ConfigMap")}
        for where, _, spec in r.pod_specs():
            for c in containers(spec):
                for e in c.get("env", []):
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        assert ref["key"] in secrets[ref["name"]], (name, where, ref)
            for vol in spec.get("volumes", []):
                sources = vol.get("projected", {}).get("sources", [])
                for src in [*sources, vol]:
                    if "configMap" in src:
                        assert src["configMap"]["name"] in configmaps, (name, where)
                    if "secret" in src:
                        sec = src["secret"]
                        sname = sec.get("name") or sec.get("secretName")
                        for item in sec.get("items", []):
                            assert item["key"] in secrets[sname], (name, where, item)


# --- built-in users and OIDC (jwt mode) ---------------------------------------------


def _gateway(r: Rendered) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = r.one("Deployment", "natter-gateway")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return pod, c


def test_jwt_mode_mounts_the_users_file(default: Rendered) -> None:
    import yaml

    pod, gw = _gateway(default)
    env = env_of(gw)
    secret = default.one("Secret", "natter-users")
    assert yaml.safe_load(secret["stringData"]["users.yaml"]) == {"users": []}
    (mount,) = [m for m in gw["volumeMounts"] if m["name"] == "users"]
    assert mount["readOnly"] is True and "subPath" not in mount  # Secret updates reach the pod
    (volume,) = [v for v in pod["volumes"] if v["name"] == "users"]
    assert volume["secret"]["secretName"] == "natter-users"
    (item,) = volume["secret"]["items"]
    assert env["NATTER_USERS_FILE"] == f"{mount['mountPath']}/{item['path']}"
    assert not any(n.startswith(("NATTER_OIDC_", "NATTER_ALLOWED_")) for n in env)
    # Open mode has no users at all.
    open_ = render(sets=["auth.mode=open"])
    assert open_.maybe("Secret", "natter-users") is None
    pod, gw = _gateway(open_)
    assert "NATTER_USERS_FILE" not in env_of(gw)
    assert "users" not in {v["name"] for v in pod["volumes"]}


def test_users_from_values_and_a_users_file(tmp_path: Path) -> None:
    import yaml

    from natter.auth import users as users_file

    path = tmp_path / "users.yaml"
    users_file.add_user(path, "alice", "pw-alice", ["admins"])
    users_file.add_user(path, "bob", "pw-bob")
    carol = {"name": "carol", "password_hash": users_file.hash_password("pw-carol")}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"auth": {"usersFile": path.read_text(), "users": [carol]}}))
    r = render([values])
    text = r.one("Secret", "natter-users")["stringData"]["users.yaml"]
    # The gateway's own parser reads what the chart wrote; the hashes still verify.
    store = users_file.parse(yaml.safe_load(text))
    assert sorted(store) == ["alice", "bob", "carol"]
    assert store["alice"].groups == ("admins",)
    for name in store:
        assert users_file._HASHER.verify(store[name].password_hash, f"pw-{name}")


def test_existing_users_secret_replaces_the_charts() -> None:
    r = render(sets=["auth.existingUsersSecret=team-users"])
    assert r.maybe("Secret", "natter-users") is None
    pod, _ = _gateway(r)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "users"]
    assert volume["secret"]["secretName"] == "team-users"
    assert volume["secret"]["items"] == [{"key": "users.yaml", "path": "users.yaml"}]


def test_oidc_and_allowed_origins() -> None:
    r = render(
        sets=[
            "auth.oidc.issuer=https://idp.example.com/realms/chat",
            "auth.oidc.audience=natter",
            "auth.oidc.jwksUrl=https://idp.example.com/realms/chat/certs",
            "gateway.allowedOrigins[0]=https://chat.example.com",
            "gateway.allowedOrigins[1]=https://chat.example.org",
        ]
    )
    env = env_of(_gateway(r)[1])
    assert env["NATTER_OIDC_ISSUER"] == "https://idp.example.com/realms/chat"
    assert env["NATTER_OIDC_AUDIENCE"] == "natter"
    assert env["NATTER_OIDC_JWKS_URL"] == "https://idp.example.com/realms/chat/certs"
    assert env["NATTER_ALLOWED_ORIGINS"] == "https://chat.example.com,https://chat.example.org"
    # The gateway reads them as its settings.
    from natter.config import Settings

    rendered = {k: v for k, v in env.items() if k.startswith(("NATTER_OIDC_", "NATTER_ALLOWED_"))}
    settings = Settings(**{k.removeprefix("NATTER_").lower(): v for k, v in rendered.items()})
    assert settings.oidc_jwks_url == env["NATTER_OIDC_JWKS_URL"]
    assert settings.allowed_origins == env["NATTER_ALLOWED_ORIGINS"]
    origins = render(sets=["auth.mode=open", "gateway.allowedOrigins[0]=*"])
    assert env_of(_gateway(origins)[1])["NATTER_ALLOWED_ORIGINS"] == "*"


BAD_AUTH = [
    (
        ["auth.existingUsersSecret=mine", "auth.usersFile=users: []"],
        "auth.existingUsersSecret replaces",
    ),
    (["auth.usersFile=users: 3"], "auth.usersFile must hold"),
    (["auth.usersFile=users: [{name: x}]"], "needs string name and password_hash"),
    (["auth.usersFile=users:\n- name: no/slash\n  password_hash: h"], "user names are"),
    (
        [
            "auth.usersFile=users:\n- name: a\n  password_hash: h",
            "auth.users[0].name=a",
            "auth.users[0].password_hash=$argon2id$x",
        ],
        "appears twice",
    ),
    (["auth.oidc.audience=natter"], "need auth.oidc.issuer"),
]


@pytest.mark.parametrize(("sets", "message"), BAD_AUTH, ids=[m for _, m in BAD_AUTH])
def test_bad_auth_values_are_refused(sets: list[str], message: str) -> None:
    from tests.chart._helm import RenderError

    with pytest.raises(RenderError, match=re.escape(message)):
        render(sets=sets)


# --- security, labels, services -----------------------------------------------------


@pytest.mark.parametrize("scenario", ALL)
def test_every_pod_is_non_root_with_read_only_root(scenario: str) -> None:
    r = render_scenario(scenario)
    pods = list(r.pod_specs())
    assert pods
    for where, _, spec in pods:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (where, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (where, c["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (where, c["name"])
            assert not sc.get("privileged"), (where, c["name"])
            assert "resources" in c and c["resources"]["requests"], (where, c["name"])


@pytest.mark.parametrize("scenario", ALL)
def test_labels_and_service_selectors(scenario: str) -> None:
    r = render_scenario(scenario)
    for obj in r.objects:
        labels = obj["metadata"].get("labels", {})
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
        ):
            assert key in labels, (obj["kind"], obj["metadata"]["name"], key)
        assert len(obj["metadata"]["name"]) <= 63
    for svc in r.all("Service"):
        selected = [
            spec
            for _, meta, spec in r.pod_specs()
            if selector_matches({"matchLabels": svc["spec"]["selector"]}, meta["labels"])
        ]
        assert selected, svc["metadata"]["name"]
        for port in svc["spec"]["ports"]:
            for spec in selected:
                names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
                assert port["targetPort"] in names, (svc["metadata"]["name"], port)


# --- network policy -----------------------------------------------------------------


def _allowed(policy: dict[str, Any], port: str, labels: dict[str, str]) -> bool:
    for rule in policy["spec"].get("ingress", []):
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        if "from" not in rule:
            return True
        if any(
            "podSelector" in peer
            and "namespaceSelector" not in peer
            and selector_matches(peer["podSelector"], labels)
            for peer in rule["from"]
        ):
            return True
    return False


def test_network_policy_lets_only_natter_reach_nats() -> None:
    r = render_scenario("scaled-bridges")
    policy = r.one("NetworkPolicy", "chat-nats")
    nats_labels = r.one("StatefulSet", "chat-nats")["spec"]["template"]["metadata"]["labels"]
    assert selector_matches(policy["spec"]["podSelector"], nats_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    by_component: dict[str, list[dict[str, str]]] = {}
    for _, meta, _ in r.pod_specs():
        by_component.setdefault(meta["labels"]["app.kubernetes.io/component"], []).append(
            meta["labels"]
        )
    for component in ("gateway", "operator", "bridge"):
        for labels in by_component[component]:
            assert _allowed(policy, "client", labels), component
            assert not _allowed(policy, "cluster", labels), component
    for labels in by_component["nats"]:
        assert _allowed(policy, "cluster", labels)
    stranger = {"app": "something-else"}
    other_release = {**by_component["gateway"][0], "app.kubernetes.io/instance": "other"}
    for labels in (stranger, other_release):
        for port in ("client", "cluster", "monitor"):
            assert not _allowed(policy, port, labels), (labels, port)
    # The monitoring peers from values come through unchanged.
    monitor_rule = next(
        rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == "monitor"
    )
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    } in monitor_rule["from"]
    # Gateways take traffic from anyone, on their HTTP port only.
    gw = r.one("NetworkPolicy", "chat-gateway")
    assert _allowed(gw, "http", stranger) and not _allowed(gw, "metrics-or-anything", stranger)
    # Operator and bridges take none.
    closed = r.one("NetworkPolicy", "chat-no-ingress")
    assert "ingress" not in closed["spec"] and closed["spec"]["policyTypes"] == ["Ingress"]
    for component in ("operator", "bridge"):
        assert all(
            selector_matches(closed["spec"]["podSelector"], lab) for lab in by_component[component]
        )
    for component in ("gateway", "nats"):
        assert not any(
            selector_matches(closed["spec"]["podSelector"], lab) for lab in by_component[component]
        )
    assert render_scenario("open-nodeport").all("NetworkPolicy") == []


# --- helm test ----------------------------------------------------------------------


def test_helm_test_sends_through_the_gateway(default: Rendered) -> None:
    pod = default.one("Pod", "natter-helm-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    room = default.one("ChatRoom", "natter-helm-test")
    assert room["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert int(room["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0
    (c,) = pod["spec"]["containers"]
    env = env_of(c)
    svc = default.one("Service", "natter-gateway")
    assert (
        env["NATTER_TEST_GATEWAY"]
        == f"http://natter-gateway.default.svc:{svc['spec']['ports'][0]['port']}"
    )
    assert env["NATTER_TEST_ROOM"] == room["metadata"]["name"]
    assert room["metadata"]["namespace"] == "default"
    assert env["NATTER_JWT_SECRET"]["secretKeyRef"]["key"] == "jwt-secret"
    script = default.one("ConfigMap", "natter-helm-test")["data"]["helm-test.py"]
    assert c["command"] == ["python", "/test/helm-test.py"]
    compile(script, "helm-test.py", "exec")
    assert render_scenario("minimal").all("Pod") == []


def test_nats_restarts_only_when_auth_inputs_change() -> None:
    def checksum(r: Rendered) -> str:
        sts = r.all("StatefulSet")[0]
        return str(sts["spec"]["template"]["metadata"]["annotations"]["checksum/auth"])

    first, second = render(), render(sets=["commonLabels.other=render"])
    # Fresh random passwords in each render, yet the same checksum...
    assert first.one("Secret", "natter-credentials") != second.one("Secret", "natter-credentials")
    assert checksum(first) == checksum(second)
    # ...which moves when users or permissions do.
    bridged = render(sets=["bridges.twitch[0].channel=abc", "bridges.twitch[0].room=general"])
    assert checksum(bridged) != checksum(first)
    assert checksum(render(sets=["gateway.roomNamespace=other"])) != checksum(first)
