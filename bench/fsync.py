"""What ``sync_interval: always`` costs: JetStream publish rate and latency, R3, per setting.

.venv/bin/python -m bench.fsync              # always vs 2m
.venv/bin/python -m bench.fsync always 1s 2m
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import nats

from natter.embedded import NatsCluster
from natter.reconcile import stream_config
from natter.rooms import Room

PAYLOAD = b'{"id":"x","user":"bench","text":"hello world","ts":"2026-01-01T00:00:00Z"}'


async def measure(sync: str, base: Path) -> list[str]:
    cluster = NatsCluster(
        Path(tempfile.mkdtemp(prefix=f"fsync-{sync}-", dir=base)), 3, sync_interval=sync
    )
    await cluster.start()
    lines = []
    try:
        nc = await nats.connect(servers=cluster.client_urls)
        js = nc.jetstream(timeout=10)
        room = Room.build("default", "fsync", {})
        await js.add_stream(stream_config(room))
        for window, count in ((1, 500), (16, 3000)):
            gate = asyncio.Semaphore(window)
            latencies: list[float] = []

            async def one(
                i: int,
                window: int = window,
                gate: asyncio.Semaphore = gate,
                latencies: list[float] = latencies,
            ) -> None:
                async with gate:
                    started = time.perf_counter()
                    await js.publish(
                        room.subject, PAYLOAD, headers={"Nats-Msg-Id": f"{window}-{i}"}
                    )
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(count)))
            elapsed = time.perf_counter() - started
            latencies.sort()
            lines.append(
                f"{sync:>8}  {window:>2} in flight: {count / elapsed:6.0f} msg/s, "
                f"p50 {latencies[len(latencies) // 2] * 1000:5.1f} ms, "
                f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:5.1f} ms"
            )
        await nc.close()
    finally:
        await cluster.stop()
    return lines


async def main(settings: list[str]) -> None:
    base = Path(tempfile.mkdtemp(prefix="natter-fsync-"))
    for sync in settings:
        for line in await measure(sync, base):
            print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["always", "2m"]))
