"""natter's Kubernetes operator: ChatRoom resources become JetStream streams.

It builds on ``natter.rooms``, ``natter.bus`` and ``natter.reconcile`` (the same
reconciler ``natter up`` uses) and never imports the gateway.
"""

from __future__ import annotations

GROUP = "natter.dev"
VERSION = "v1alpha1"
PLURAL = "chatrooms"
FINALIZER = "natter.dev/stream-cleanup"
