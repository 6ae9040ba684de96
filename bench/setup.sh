#!/usr/bin/env bash
# Install or build what the benchmark suite needs; every step is skipped when done.
#
#   * redis-server (Debian package) for the python-socketio peer
#   * the load generator and the Go origin peer (bench/loadgen, bench/peers/origin)
#   * Centrifugo, built from its Go module into the cache (never into the repo)
#
# Binaries go to $NATTER_BENCH_CACHE/bin (default ~/.cache/natter/bench/bin).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${NATTER_BENCH_CACHE:-$HOME/.cache/natter/bench}"
bin="$cache/bin"
centrifugo_version="${CENTRIFUGO_VERSION:-v6.9.1}"
mkdir -p "$bin"

go=$(command -v go || echo /usr/local/go/bin/go)
if [[ ! -x "$go" ]]; then
    echo "bench/setup.sh: Go toolchain not found (needed for the load generator)" >&2
    exit 1
fi

if ! command -v redis-server >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
        # The package starts a system instance; the suite runs its own on a free port.
        (systemctl disable --now redis-server 2>/dev/null || service redis-server stop 2>/dev/null) || true
    else
        echo "bench/setup.sh: redis-server missing; install it (apt-get install redis-server)" >&2
    fi
fi

echo "building the load generator and the Go origin peer"
(cd "$here/loadgen" && GOFLAGS=-mod=mod "$go" build -o "$bin/loadgen" .)
(cd "$here/peers/origin" && GOFLAGS=-mod=mod "$go" build -o "$bin/origin-peer" .)

stamp="$cache/centrifugo.$centrifugo_version"
if [[ ! -x "$bin/centrifugo" || ! -f "$stamp" ]]; then
    echo "building Centrifugo $centrifugo_version from its Go module (first time: a few minutes)"
    if (cd "$cache" && GOBIN="$bin" GOFLAGS=-mod=mod \
        "$go" install "github.com/centrifugal/centrifugo/v6@$centrifugo_version") \
        >"$cache/centrifugo.build.log" 2>&1; then
        touch "$stamp"
    else
        echo "bench/setup.sh: Centrifugo did not build; the report says why:" >&2
        tail -5 "$cache/centrifugo.build.log" >&2
    fi
fi
echo "bench tools ready in $bin"
