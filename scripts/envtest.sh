#!/usr/bin/env bash
# Ensure kube-apiserver and etcd binaries for the operator test tier and print,
# as the LAST line of stdout, the directory that holds them.
#
#   * KUBEBUILDER_ASSETS set (and holding both binaries): print it, build nothing.
#   * otherwise: build pinned versions from the Go module proxy with the local Go
#     toolchain into ~/.cache/natter/envtest/k8s-<v>_etcd-<v>/ (reused when present).
#     When no kubectl is on PATH, kubectl of the same release is built there too.
#   * NATTER_ENVTEST_NO_BUILD=1: never build; fail when the binaries are missing
#     (the pytest fixture uses this to fail fast with "run make envtest").
#
# `go install k8s.io/kubernetes/cmd/kube-apiserver@v…` refuses modules with replace
# directives, so each binary is built from a throwaway module that requires the
# upstream module and pins the k8s.io staging modules to their published versions.
set -euo pipefail

K8S_VERSION="${NATTER_ENVTEST_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${NATTER_ENVTEST_ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${NATTER_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/natter/envtest}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

log() { echo "envtest: $*" >&2; }

# kubectl on PATH will do (NATTER_ENVTEST_BUILD_KUBECTL=1 builds one regardless).
system_kubectl() {
    [[ "${NATTER_ENVTEST_BUILD_KUBECTL:-}" != 1 ]] && command -v kubectl >/dev/null
}

has_binaries() {
    [[ -x "$1/kube-apiserver" && -x "$1/etcd" ]] && { system_kubectl || [[ -x "$1/kubectl" ]]; }
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    if ! has_binaries "$KUBEBUILDER_ASSETS"; then
        log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver or etcd"
        exit 1
    fi
    echo "$KUBEBUILDER_ASSETS"
    exit 0
fi

DEST="$CACHE_ROOT/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}"
if has_binaries "$DEST"; then
    log "reusing $DEST"
    echo "$DEST"
    exit 0
fi

if [[ "${NATTER_ENVTEST_NO_BUILD:-}" == 1 ]]; then
    log "no binaries in $DEST and NATTER_ENVTEST_NO_BUILD=1; run: make envtest"
    exit 1
fi
if [[ ! -x "$GO" ]]; then
    log "no Go toolchain found (set GO=/path/to/go or KUBEBUILDER_ASSETS)"
    exit 1
fi
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

WORK="$(mktemp -d "${TMPDIR:-/tmp}/natter-envtest.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin"
start=$SECONDS

build_kube_apiserver() {
    local mod="$WORK/kube" minor="v0.${K8S_VERSION#v1.}"
    mkdir -p "$mod"
    cd "$mod"
    "$GO" mod init natter.dev/envtest/kube >/dev/null 2>&1
    # go.mod is resolved even when only kubectl is missing: it is the same module graph.
    # The staging modules k8s.io/kubernetes replaces with ./staging/src/… are
    # published as k8s.io/<name> v0.<minor>.<patch>; pin each of them.
    local gomod
    gomod="$("$GO" mod download -json "k8s.io/kubernetes@${K8S_VERSION}" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    local replaces
    replaces="$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod")"
    if [[ -z "$replaces" ]]; then
        log "found no staging replace directives in $gomod"
        return 1
    fi
    local args=()
    for m in $replaces; do
        args+=("-replace=${m}=${m}@${minor}")
    done
    "$GO" mod edit "${args[@]}" -require="k8s.io/kubernetes@${K8S_VERSION}"
    printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' >tools.go
    "$GO" mod tidy >&2
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}
        -X k8s.io/component-base/version.gitMajor=1
        -X k8s.io/component-base/version.gitMinor=${minor#v0.}"
    if [[ ! -x "$DEST/kube-apiserver" ]]; then
        log "building kube-apiserver ${K8S_VERSION}"
        "$GO" build -trimpath -ldflags "$ldflags" \
            -o "$WORK/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
    fi
    if ! system_kubectl && [[ ! -x "$DEST/kubectl" ]]; then
        log "no kubectl on PATH; building kubectl ${K8S_VERSION}"
        printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/kubectl"\n' >tools_kubectl.go
        "$GO" mod tidy >&2
        "$GO" build -trimpath -ldflags "$ldflags ${ldflags//component-base/client-go/pkg}" \
            -o "$WORK/bin/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
    fi
}

build_etcd() {
    [[ -x "$DEST/etcd" ]] && return 0
    local mod="$WORK/etcd"
    mkdir -p "$mod"
    cd "$mod"
    "$GO" mod init natter.dev/envtest/etcd >/dev/null 2>&1
    # etcd's server module replaces its sibling modules with ../api etc.; require
    # the published siblings at the same version instead.
    "$GO" mod edit \
        -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}" \
        -require="go.etcd.io/etcd/api/v3@${ETCD_VERSION}" \
        -require="go.etcd.io/etcd/client/pkg/v3@${ETCD_VERSION}" \
        -require="go.etcd.io/etcd/client/v3@${ETCD_VERSION}" \
        -require="go.etcd.io/etcd/pkg/v3@${ETCD_VERSION}"
    printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
    "$GO" mod tidy >&2
    log "building etcd ${ETCD_VERSION}"
    "$GO" build -trimpath -ldflags "-s -w" -o "$WORK/bin/etcd" go.etcd.io/etcd/server/v3 >&2
}

(build_etcd)
(build_kube_apiserver)

# Publish each binary atomically so a half-built one is never reused.
mkdir -p "$DEST"
for bin in "$WORK"/bin/*; do
    [[ -e "$bin" ]] || continue
    mv "$bin" "$DEST/.$(basename "$bin").tmp"
    mv "$DEST/.$(basename "$bin").tmp" "$DEST/$(basename "$bin")"
done
log "built in $((SECONDS - start))s into $DEST"
echo "$DEST"
