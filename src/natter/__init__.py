"""natter: a clustered real-time chat platform on NATS JetStream."""

__version__ = "0.1.0"
