"""`helm test`: send one message through the gateway's HTTP API and read it back.

Runs in the natter image. In jwt mode it signs a short-lived access token for
user "helm-test" with the chart's NATTER_JWT_SECRET, using natter's own signer.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

BASE = os.environ["NATTER_TEST_GATEWAY"].rstrip("/")
ROOM = os.environ["NATTER_TEST_ROOM"]
TIMEOUT = float(os.environ.get("NATTER_TEST_TIMEOUT", "120"))
#: Answers that mean "not yet": no connection, room not known yet, NATS not ready.
RETRY = {0, 404, 502, 503, 504}


def token(secret: str) -> str:
    from natter.auth.tokens import TokenSigner

    issuer = os.environ.get("NATTER_JWT_ISSUER", "natter")
    signer = TokenSigner(secret, issuer=issuer, access_ttl=600, refresh_ttl=600)
    return signer.issue("helm-test", [], "access").token


def call(method: str, path: str, headers: dict, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def main() -> int:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    secret = os.environ.get("NATTER_JWT_SECRET")
    if secret:
        headers["Authorization"] = "Bearer " + token(secret)
    text = f"helm test {uuid.uuid4().hex}"
    deadline = time.monotonic() + TIMEOUT
    delay = 0.5
    # The room was created just before this pod; retry until the operator has made
    # its stream and the gateway knows it.
    while True:
        try:
            status, answer = call("POST", f"/api/rooms/{ROOM}/messages", headers, {"text": text})
        except OSError as exc:
            status, answer = 0, repr(exc)
        if status == 201:
            break
        if status not in RETRY:
            print(f"FAIL: POST /api/rooms/{ROOM}/messages answered {status}: {answer}")
            return 1
        if time.monotonic() + delay > deadline:
            print(f"FAIL: POST /api/rooms/{ROOM}/messages answered {status}: {answer}")
            return 1
        print(f"waiting for room {ROOM}: {status} {answer}", flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    seq = answer["seq"]
    status, page = call("GET", f"/api/rooms/{ROOM}/messages?after={seq - 1}", headers)
    messages = page.get("messages", []) if isinstance(page, dict) else page
    found = [m for m in messages or [] if isinstance(m, dict) and m.get("seq") == seq]
    if status != 200 or not found or found[0].get("text") != text:
        print(f"FAIL: message {seq} not read back: {status} {page}")
        return 1
    if secret and found[0].get("user") != "helm-test":
        print(f"FAIL: message {seq} is from {found[0].get('user')!r}, not the token's user")
        return 1
    print(f"OK: sent and read back seq {seq} in room {ROOM} as {found[0].get('user')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
