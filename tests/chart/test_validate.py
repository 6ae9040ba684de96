"""helm lint, and every rendered object validated against Kubernetes' schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.chart._helm import CHART, SCENARIOS, helm, load_yaml, render_scenario

#: The oldest Kubernetes the chart supports well and a current one.
KUBE_VERSIONS = ("1.31", "1.34")


def test_kubernetes_validate_knows_the_versions() -> None:
    known = {".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions()}
    assert set(KUBE_VERSIONS) <= known, f"kubernetes-validate ships schemas for {sorted(known)}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint(scenario: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for values in SCENARIOS[scenario]:
        args += ["-f", str(values)]
    proc = helm(*args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of the CRDs the chart ships."""
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = load_yaml(path)
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            out[key] = version["schema"]["openAPIV3Schema"]
    return out


def test_chart_ships_the_chatroom_crd() -> None:
    assert ("natter.dev/v1alpha1", "ChatRoom") in _crd_schemas()


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_objects_validate_strictly(scenario: str, version: str) -> None:
    rendered = render_scenario(scenario, kube_version=f"{version}.0")
    crds = [load_yaml(p) for p in sorted((CHART / "crds").glob("*.yaml"))]
    custom = _crd_schemas()
    failures = []
    for obj in [*rendered.objects, *crds]:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        key = (obj["apiVersion"], obj["kind"])
        if key in custom:
            # Custom resources: the CRD's structural schema (the API server adds CEL on install).
            try:
                jsonschema.validate(
                    {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")},
                    {
                        **custom[key],
                        "properties": {
                            k: v
                            for k, v in custom[key].get("properties", {}).items()
                            if k not in ("apiVersion", "kind", "metadata")
                        },
                    },
                )
            except jsonschema.ValidationError as exc:
                failures.append(f"{where}: {exc.message}")
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{where}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{where}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_kube_version_floor() -> None:
    proc = helm("template", "natter", str(CHART), "--kube-version", "1.29.0", check=False)
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr


def test_ci_scenarios_exist() -> None:
    assert len([p for p in SCENARIOS.values() if p and Path(p[0]).parent.name == "ci"]) >= 3
