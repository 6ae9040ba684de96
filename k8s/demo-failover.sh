#!/usr/bin/env bash
# Kill the NATS server that leads a room's stream while messages keep flowing.
#
#   k8s/demo-failover.sh [ROOM]            (default room: general)
#
# It sends a message every moment through the gateway's HTTP API, deletes the
# pod named by the room's status.stream.leader, keeps sending until the
# StatefulSet has brought that server back, then reads the room and checks that
# every acknowledged message is there. Exit status 0 means none was lost.
#
# Environment: NATTER_URL (http://localhost:8080), ROOM_NAMESPACE (default),
# NATS_NAMESPACE (where natter is installed; default: ROOM_NAMESPACE),
# NATTER_TOKEN (a login token, when the gateways run with auth.mode=jwt),
# FAILOVER_TIMEOUT (seconds to wait for the server to return; 300).
set -euo pipefail

room="${1:-general}"
url="${NATTER_URL:-http://localhost:8080}"
room_ns="${ROOM_NAMESPACE:-default}"
nats_ns="${NATS_NAMESPACE:-$room_ns}"
timeout="${FAILOVER_TIMEOUT:-300}"
auth=()
if [[ -n "${NATTER_TOKEN:-}" ]]; then
    auth=(-H "Authorization: Bearer $NATTER_TOKEN")
fi

acked=$(mktemp)
trap 'rm -f "$acked"' EXIT
run_id="$(date +%s)-$$"
count=0
failed=0

send() {
    count=$((count + 1))
    local text="failover demo $run_id #$count" answer seq
    if answer=$(curl -fsS --max-time 20 "${auth[@]}" -H 'Content-Type: application/json' \
            -d "{\"text\": \"$text\"}" "$url/api/rooms/$room/messages" 2>&1); then
        seq=$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["seq"])')
        printf '%s\t%s\n' "$seq" "$text" >> "$acked"
        echo "  sent #$count -> seq $seq"
    else
        failed=$((failed + 1))
        echo "  sent #$count -> not acknowledged ($answer)"
    fi
}

leader=$(kubectl -n "$room_ns" get chatroom "$room" -o jsonpath='{.status.stream.leader}')
if [[ -z "$leader" ]]; then
    echo "room $room_ns/$room reports no stream leader yet (kubectl -n $room_ns get chatroom $room)" >&2
    exit 1
fi
old_uid=$(kubectl -n "$nats_ns" get pod "$leader" -o jsonpath='{.metadata.uid}')
echo "room $room: stream leader is $leader"

echo "sending before the failure:"
for _ in 1 2 3 4 5; do send; done

echo "deleting pod $leader (the stream leader):"
kubectl -n "$nats_ns" delete pod "$leader" --wait=false

echo "sending while the cluster elects a new leader and $leader comes back:"
deadline=$((SECONDS + timeout))
while :; do
    send
    state=$(kubectl -n "$nats_ns" get pod "$leader" --ignore-not-found \
        -o jsonpath='{.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}')
    if [[ "$state" != "$old_uid "* && "$state" == *" True" ]]; then
        break
    fi
    if ((SECONDS > deadline)); then
        echo "$leader did not come back within ${timeout}s" >&2
        exit 1
    fi
done
echo "$leader is back; sending after the recovery:"
for _ in 1 2 3 4 5; do send; done

new_leader=$(kubectl -n "$room_ns" get chatroom "$room" -o jsonpath='{.status.stream.leader}')
echo "stream leader is now ${new_leader:-unknown (the operator updates status periodically)}"

echo "reading the room back:"
first=$(head -n1 "$acked" | cut -f1)
python3 - "$url" "$room" "$first" "$acked" "${NATTER_TOKEN:-}" <<'PY'
import json, sys, urllib.request

url, room, first, acked_file, token = sys.argv[1:6]
acked = dict(line.rstrip("\n").split("\t", 1) for line in open(acked_file) if line.strip())
headers = {"Authorization": f"Bearer {token}"} if token else {}
stored, after = {}, int(first) - 1
while True:
    req = urllib.request.Request(f"{url}/api/rooms/{room}/messages?after={after}&limit=500", headers=headers)
    page = json.load(urllib.request.urlopen(req, timeout=20))
    messages = page.get("messages", []) if isinstance(page, dict) else page
    if not messages:
        break
    for m in messages:
        stored[str(m["seq"])] = m["text"]
    after = max(int(m["seq"]) for m in messages)
lost = sorted((int(s) for s, t in acked.items() if stored.get(s) != t))
print(f"{len(acked)} messages acknowledged, {len(acked) - len(lost)} read back, {len(lost)} lost")
if lost:
    print("lost seqs:", lost)
    sys.exit(1)
PY
echo "unacknowledged sends (the client would retry them): $failed"
