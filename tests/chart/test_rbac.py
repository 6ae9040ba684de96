"""The operator's RBAC in the chart is exactly operator/rbac-rules.yaml, the rules
tests/operator/test_rbac.py proves sufficient by running the operator under them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart._helm import REPO, Rendered, load_yaml, render

CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces"}


def _norm(rules: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], ...]]:
    return sorted(
        (
            tuple(sorted(r.get("apiGroups", []))),
            tuple(sorted(r["resources"])),
            tuple(sorted(r["verbs"])),
        )
        for r in rules
    )


def _operator_rules(r: Rendered) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    (cluster_role,) = r.all("ClusterRole")
    roles = r.all("Role")
    return cluster_role["rules"], [rule for role in roles for rule in role["rules"]]


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_chart_rules_equal_the_operators(scope: str) -> None:
    wanted = load_yaml(REPO / "operator" / "rbac-rules.yaml")
    cluster, namespaced = _operator_rules(render(sets=[f"operator.scope={scope}"]))
    assert _norm(cluster + namespaced) == _norm(wanted)
    if scope == "namespace":
        # A Role cannot grant cluster-scoped resources; everything else stays namespaced.
        assert all(set(r["resources"]) <= CLUSTER_SCOPED for r in cluster)
        assert not any(set(r["resources"]) & CLUSTER_SCOPED for r in namespaced)
    else:
        assert namespaced == []


def test_operator_is_bound_to_its_rules() -> None:
    r = render(sets=["operator.scope=namespace"], namespace="chat")
    (crb,) = r.all("ClusterRoleBinding")
    (rb,) = r.all("RoleBinding")
    for binding in (crb, rb):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "natter-operator", "namespace": "chat"}
        ]
    assert rb["roleRef"]["name"] == r.all("Role")[0]["metadata"]["name"]
    assert crb["roleRef"]["name"] == r.all("ClusterRole")[0]["metadata"]["name"]
    # Two releases in two namespaces must not share cluster-wide names.
    other = render(sets=["operator.scope=namespace"], namespace="chat2")
    assert (
        other.all("ClusterRole")[0]["metadata"]["name"]
        != r.all("ClusterRole")[0]["metadata"]["name"]
    )
