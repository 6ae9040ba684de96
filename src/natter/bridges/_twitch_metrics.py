"""Prometheus metrics of the Twitch bridge, labelled by channel and room."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

_LABELS = ("channel", "room")
LINES = Counter("natter_twitch_lines_received", "IRC lines received from Twitch", _LABELS)
MALFORMED = Counter("natter_twitch_lines_malformed", "Malformed lines logged and skipped", _LABELS)
PUBLISHED = Counter("natter_twitch_messages_published", "Twitch messages newly stored", _LABELS)
DUPLICATES = Counter(
    "natter_twitch_messages_duplicate", "Replayed Twitch messages not stored again", _LABELS
)
REJECTED = Counter("natter_twitch_messages_rejected", "Messages the room refused", _LABELS)
RECONNECTS = Counter("natter_twitch_reconnects", "Connections to Twitch after the first", _LABELS)
RELAYED = Counter("natter_twitch_relayed", "natter messages posted to Twitch", _LABELS)
RELAY_DROPPED = Counter(
    "natter_twitch_relay_dropped", "Relay messages dropped while Twitch was away", _LABELS
)
BUFFERED = Gauge("natter_twitch_buffered", "Twitch messages held, not yet stored", _LABELS)
JOINED = Gauge("natter_twitch_joined", "1 while the bridge is in the Twitch channel", _LABELS)
