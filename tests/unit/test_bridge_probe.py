"""The bridge's probe endpoint: /healthz, /readyz and /metrics over real HTTP."""

from __future__ import annotations

import httpx

from natter.bridges._probe import ProbeServer


async def test_probe_endpoints_follow_readiness() -> None:
    ready = False
    probe = ProbeServer("127.0.0.1", 0, lambda: ready)
    await probe.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{probe.port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503
            ready = True
            assert (await http.get("/readyz?verbose=1")).status_code == 200
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
            assert "python_info" in metrics.text
            assert (await http.get("/other")).status_code == 404
            assert (await http.post("/readyz")).status_code == 405
            head = await http.head("/healthz")
            assert head.status_code == 200 and head.content == b""
    finally:
        await probe.close()
