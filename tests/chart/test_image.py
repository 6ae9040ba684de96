"""The Dockerfile, its build context and the other build files, without a Docker
engine: hadolint, the Dockerfile's promises (non-root, read-only-friendly,
`natter` entrypoint), the wheel the image installs built from exactly the files
.dockerignore lets in, shellcheck on the scripts, skaffold.yaml against
skaffold's own JSON schema (fetched from skaffold's Go module)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.chart._helm import REPO, tool

DOCKERFILE = REPO / "Dockerfile"
BIN = Path(sys.executable).parent


def test_hadolint() -> None:
    proc = subprocess.run(
        [str(BIN / "hadolint"), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_promises() -> None:
    ins = _instructions()
    froms = [rest for op, rest in ins if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a slim runtime stage"
    assert all("slim" in f for f in froms)
    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM") :]
    users = [rest for op, rest in final if op == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), "numeric non-root USER"
    assert ("ENTRYPOINT", '["natter"]') in final
    env = " ".join(rest for op, rest in final if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "no .pyc writes on a read-only root filesystem"
    # The runtime stage installs nothing: only the built virtualenv is copied in.
    assert not [rest for op, rest in final if op == "RUN"]
    # The chart's runAsUser is the image's user, so file ownership and runAsNonRoot agree.
    values = yaml.safe_load((REPO / "chart" / "natter" / "values.yaml").read_text())
    uid = users[-1].split(":")[0]
    assert str(values["podSecurityContext"]["runAsUser"]) == uid


def _ignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            out.append((negate, line.lstrip("!").rstrip("/")))
    return out


def _ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, pattern in patterns:
        regex = fnmatch.translate(pattern.replace("**/", "\0")).replace("\0", "(?:.*/)?")
        if any(re.match(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def build_context(dest: Path) -> Path:
    """A copy of what `docker build .` would send, per .dockerignore."""
    patterns = _ignore_patterns()
    for root, dirs, files in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if d not in (".git", ".venv", "node_modules")]
        for name in files:
            rel = (rel_root / name).as_posix()
            if not _ignored(rel, patterns):
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, target)
    return dest


def test_build_context_has_what_the_dockerfile_copies(tmp_path: Path) -> None:
    context = build_context(tmp_path / "context")
    for op, rest in _instructions():
        if op == "COPY" and "--from" not in rest:
            *sources, _ = rest.split()
            for source in sources:
                assert (context / source).exists(), f"COPY {source}: not in the build context"
    assert not list(context.rglob("__pycache__"))
    assert not (context / "tests").exists() and not (context / ".venv").exists()


@pytest.mark.slow
def test_the_image_wheel_holds_the_whole_app(tmp_path: Path) -> None:
    """The Dockerfile's `pip install .`, from the build context, ships every module,
    the web UI and the operator (an editable install would hide a missing file)."""
    context = build_context(tmp_path / "context")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("natter-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = set()
    for package_root in (REPO / "src", REPO / "operator"):
        for path in package_root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                rel = path.relative_to(package_root).as_posix()
                if rel.startswith(("natter/", "natter_operator/")):
                    wanted.add(rel)
    missing = sorted(wanted - names)
    assert not missing, f"the image would lack: {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "natter = natter.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_shellcheck() -> None:
    scripts = [
        REPO / "k8s" / "demo-failover.sh",
        REPO / "scripts" / "helm.sh",
        REPO / "scripts" / "skaffold-schema.sh",
    ]
    proc = subprocess.run(
        [str(BIN / "shellcheck"), *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _skaffold_schema() -> dict[str, object]:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    script = (REPO / "scripts" / "skaffold-schema.sh").read_text()
    pinned = re.search(r'SCHEMA="\$\{SKAFFOLD_SCHEMA:-(v\w+)\}"', script)
    assert pinned and config["apiVersion"] == f"skaffold/{pinned.group(1)}"
    return dict(json.loads(Path(tool("skaffold-schema.sh")).read_text()))


def test_skaffold_config_matches_skaffolds_schema() -> None:
    schema = _skaffold_schema()
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    jsonschema.validate(config, schema)
    # And with each profile's patches applied, as skaffold does.
    for profile in config["profiles"]:
        patched = json.loads(json.dumps(config))
        for patch in profile.get("patches", []):
            *parents, last = [p for p in patch["path"].split("/") if p]
            node = patched
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            assert patch["op"] == "add"
            node[last] = patch["value"]
        jsonschema.validate(patched, schema)
    # The schema is strict: a misspelt field is an error.
    broken = json.loads(json.dumps(config))
    broken["deploy"]["helm"]["releases"][0]["valueFile"] = ["x"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
