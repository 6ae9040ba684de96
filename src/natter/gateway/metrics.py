"""Prometheus metrics of one gateway process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
FRAMES_OUT = Counter(
    "natter_gateway_frames_out_total", "Frames sent to clients.", registry=REGISTRY
)
WS_MESSAGES_OUT = Counter(
    "natter_gateway_ws_messages_out_total",
    "WebSocket messages sent (a batch counts once).",
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
FANOUT_QUEUE = Gauge(
    "natter_gateway_fanout_queue_depth",
    "Frames waiting in all per-socket send queues.",
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
