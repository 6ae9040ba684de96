"""Prometheus metrics of one gateway process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

CONNECTIONS = Gauge(
    "natter_gateway_open_connections", "Open WebSocket connections.", registry=REGISTRY
)
CONNECTIONS_TOTAL = Counter(
    "natter_gateway_connections_total", "WebSocket connections accepted.", registry=REGISTRY
)
FRAMES_IN = Counter(
    "natter_gateway_frames_in_total",
    "Client frames received, by type.",
    ["type"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "natter_gateway_errors_total",
    "Error frames and problem responses, by code.",
    ["code"],
    registry=REGISTRY,
)
PUBLISH_SECONDS = Histogram(
    "natter_gateway_publish_seconds",
    "Time from send to JetStream acknowledgement.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
NATS_EVENTS = Counter(
    "natter_gateway_nats_events_total",
    "NATS client events (disconnected, reconnected, error, lame_duck, closed).",
    ["event"],
    registry=REGISTRY,
)
ROOM_FEEDS = Gauge(
    "natter_gateway_room_feeds",
    "Rooms this process follows (one NATS consumer each).",
    registry=REGISTRY,
)
GAP_FILLS = Counter(
    "natter_gateway_gap_fills_total",
    "Seq gaps in a room feed filled from the stream.",
    registry=REGISTRY,
)
SLOW_CONSUMERS = Counter(
    "natter_gateway_slow_consumers_total", "Sockets dropped for not reading.", registry=REGISTRY
)
READY = Gauge("natter_gateway_ready", "1 when NATS and JetStream answer.", registry=REGISTRY)
REFUSALS = Counter(
    "natter_gateway_refusals_total",
    "Requests refused by authentication, authorization, origin checks or abuse limits, by reason.",
    ["reason"],
    registry=REGISTRY,
)


class Outbound(Collector):
    """Per-frame counters of the fan-out path, kept as plain integers.

    Every delivered frame touches them, so they avoid the lock a prometheus
    ``Counter``/``Gauge`` takes per update (a few percent of the gateway's CPU at
    full fan-out); they are read when ``/metrics`` is scraped.
    """

    def __init__(self) -> None:
        self.frames = 0  # frames written to sockets
        self.messages = 0  # WebSocket messages written (a batch counts once)
        self.queued = 0  # frames waiting in per-socket send queues

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "natter_gateway_frames_out", "Frames sent to clients.", value=self.frames
        )
        yield CounterMetricFamily(
            "natter_gateway_ws_messages_out",
            "WebSocket messages sent (a batch counts once).",
            value=self.messages,
        )
        yield GaugeMetricFamily(
            "natter_gateway_fanout_queue_depth",
            "Frames waiting in all per-socket send queues.",
            value=self.queued,
        )


OUTBOUND = Outbound()
REGISTRY.register(OUTBOUND)
