"""The p2p package's one error base and its subclasses (in the manner of trinity's p2p/exceptions.py)."""


class P2PError(Exception):
    """Base of every error raised by the p2p package."""


class ConfigError(P2PError):
    """A host configuration value is invalid (bad multiaddr, bad mode, bad limit)."""


class IdentityError(P2PError):
    """The persistent identity in the data directory cannot be read or written."""


class DialError(P2PError):
    """A peer could not be reached in time, directly or through a relay."""


class BootstrapUnreachable(DialError):
    """None of a host's bootstrap peers answered, and the host has nothing to do alone (a light client's)."""


class StreamError(P2PError):
    """A stream failed: reset by the peer, closed early, or a frame over its size limit."""


class StreamTimeout(StreamError):
    """A stream read or write did not finish within its deadline."""


class MessageTooLarge(StreamError):
    """The peer announced a message over the size limit the reader set (nothing of it was read)."""


class ProtocolNotSupported(DialError):
    """The peer does not speak the requested protocol."""


class RecordError(P2PError):
    """A DHT pool record is malformed, oversized, forged, expired or for another key."""


class GossipError(P2PError):
    """A gossip publish or subscription failed (unknown topic, oversized payload, not subscribed)."""
