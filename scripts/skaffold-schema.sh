#!/usr/bin/env bash
# Fetch skaffold's JSON schema for the config version skaffold.yaml uses, from
# skaffold's own Go module (docs-v2/content/en/schemas/), into the tools cache.
# The last line printed is the schema's path.
set -euo pipefail

SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"
SCHEMA="${SKAFFOLD_SCHEMA:-v4beta13}"
TOOLS_CACHE="${TOOLS_CACHE:-$HOME/.cache/natter}"
GO="${GO:-/usr/local/go/bin/go}"
command -v "$GO" >/dev/null 2>&1 || GO=go
out="$TOOLS_CACHE/skaffold/$SKAFFOLD_VERSION/$SCHEMA.json"

if [[ ! -s "$out" ]]; then
    echo "fetching skaffold $SKAFFOLD_VERSION's $SCHEMA schema from its Go module (once)" >&2
    dir=$(GOFLAGS=-mod=mod "$GO" mod download -json "github.com/GoogleContainerTools/skaffold/v2@$SKAFFOLD_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
    src="$dir/docs-v2/content/en/schemas/$SCHEMA.json"
    [[ -s "$src" ]] || { echo "no $SCHEMA schema in $dir" >&2; exit 1; }
    mkdir -p "$(dirname "$out")"
    cp "$src" "$out.tmp"
    mv -f "$out.tmp" "$out"
fi
echo "$out"
