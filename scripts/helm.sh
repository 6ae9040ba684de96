#!/usr/bin/env bash
# Build helm from its Go module at a pinned version into the tools cache,
# unless that exact build is already there. The last line printed is the path
# of the binary, so callers can do: HELM=$(scripts/helm.sh | tail -n1).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.21.4}"
TOOLS_CACHE="${TOOLS_CACHE:-$HOME/.cache/natter}"
GO="${GO:-/usr/local/go/bin/go}"
command -v "$GO" >/dev/null 2>&1 || GO=go
bin_dir="$TOOLS_CACHE/bin"
helm="$bin_dir/helm"
stamp="$bin_dir/helm.build"

if [[ -x "$helm" && -f "$stamp" && "$(head -n1 "$stamp")" == "$HELM_VERSION" ]]; then
    echo "$helm"
    exit 0
fi

echo "building helm $HELM_VERSION from helm.sh/helm/v3/cmd/helm (once; cached in $bin_dir)" >&2
mkdir -p "$bin_dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# helm's release Makefile stamps its version and the Kubernetes version that
# `helm template` assumes (otherwise v1.20) with -ldflags; do the same, taking
# the Kubernetes minor from the client-go that this helm release requires.
gomod=$(GOFLAGS=-mod=mod "$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
client_go=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -n1)
[[ -n "$client_go" ]] || { echo "cannot find k8s.io/client-go in $gomod" >&2; exit 1; }

pkg=helm.sh/helm/v3
ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION"
ldflags+=" -X $pkg/internal/version.gitTreeState=clean"
ldflags+=" -X $pkg/pkg/chartutil.k8sVersionMajor=1 -X $pkg/pkg/chartutil.k8sVersionMinor=$client_go"
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$GO" install -trimpath -ldflags "$ldflags" \
    "$pkg/cmd/helm@$HELM_VERSION"

got=$("$tmp/helm" version --template '{{.Version}}')
[[ "$got" == "$HELM_VERSION" ]] || { echo "built helm reports $got, not $HELM_VERSION" >&2; exit 1; }
mv -f "$tmp/helm" "$helm"
printf '%s\nkubernetes 1.%s\n' "$HELM_VERSION" "$client_go" > "$stamp"
echo "$helm"
