"""Rendering chart/natter with the real helm binary, and reading what it renders."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart" / "natter"
KIND_VALUES = REPO / "k8s" / "kind-values.yaml"

#: Value scenarios every render test covers: the defaults, each ci/*-values.yaml
#: (chart-testing's convention) and the kind walkthrough's values.
SCENARIOS: dict[str, tuple[Path, ...]] = {
    "defaults": (),
    **{
        p.name.removesuffix("-values.yaml"): (p,)
        for p in sorted((CHART / "ci").glob("*-values.yaml"))
    },
    "kind": (KIND_VALUES,),
}

Obj = dict[str, Any]


class RenderError(RuntimeError):
    """helm refused to render; the message carries its stderr."""


def tool(script: str) -> str:
    """Run ``scripts/<script>`` (builds or reuses a cached tool) and return its last line."""
    proc = subprocess.run(
        [str(REPO / "scripts" / script)], capture_output=True, text=True, timeout=1800, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scripts/{script} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return lines[-1]


@functools.cache
def helm_binary() -> str:
    return tool("helm.sh")


def helm(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [helm_binary(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise RenderError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@dataclass(frozen=True)
class Rendered:
    """The objects one `helm template` produced."""

    objects: tuple[Obj, ...]
    release: str
    namespace: str

    def all(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> Obj:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}: {self.names()}"
        return found[0]

    def maybe(self, kind: str, name: str) -> Obj | None:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def names(self) -> list[str]:
        return [f"{o['kind']}/{o['metadata']['name']}" for o in self.objects]

    def workloads(self) -> list[Obj]:
        """Deployments and StatefulSets."""
        return [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet")]

    def pod_specs(self) -> Iterator[tuple[str, Obj, Obj]]:
        """(name, pod metadata, pod spec) of every pod the chart creates or templates."""
        for w in self.workloads():
            tpl = w["spec"]["template"]
            yield f"{w['kind']}/{w['metadata']['name']}", tpl["metadata"], tpl["spec"]
        for p in self.all("Pod"):
            yield f"Pod/{p['metadata']['name']}", p["metadata"], p["spec"]

    def config(self, name: str, key: str) -> str:
        """A ConfigMap's data[key] or a Secret's stringData[key]."""
        obj = self.maybe("ConfigMap", name)
        if obj is not None:
            return str(obj["data"][key])
        secret = self.one("Secret", name)
        return str(secret["stringData"][key])


@functools.cache
def _render(
    values: tuple[str, ...],
    sets: tuple[str, ...],
    release: str,
    namespace: str,
    kube_version: str | None,
) -> Rendered:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for v in values:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    if kube_version:
        args += ["--kube-version", kube_version]
    out = helm(*args).stdout
    objects = tuple(d for d in yaml.safe_load_all(out) if d)
    return Rendered(objects, release, namespace)


def render(
    values: Iterable[Path | str] = (),
    sets: Iterable[str] = (),
    *,
    release: str = "natter",
    namespace: str = "default",
    kube_version: str | None = None,
) -> Rendered:
    """`helm template` of chart/natter (cached per arguments)."""
    return _render(tuple(str(v) for v in values), tuple(sets), release, namespace, kube_version)


def render_scenario(name: str, **kwargs: Any) -> Rendered:
    return render(SCENARIOS[name], **kwargs)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge key by key, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def values_for(scenario: str) -> dict[str, Any]:
    """The values a scenario renders with (defaults merged with its files)."""
    values: dict[str, Any] = load_yaml(CHART / "values.yaml")
    for path in SCENARIOS[scenario]:
        values = deep_merge(values, load_yaml(path) or {})
    return values


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels and matchExpressions)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def containers(spec: Mapping[str, Any]) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    """name -> value, or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def parse_duration(text: str) -> float:
    """Go duration strings as NATS reads them ("30s", "2m", "1h30m")."""
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, number = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = text[i : i + 2] if text[i : i + 2] in units else ch
        if unit not in units or not number:
            raise ValueError(f"not a duration: {text!r}")
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"duration without a unit: {text!r}")
    return total
