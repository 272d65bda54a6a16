"""The libp2p host of the Dolphin Network: identity, transports, DHT, GossipSub topics and relays.

All py-libp2p hardening lives here; the rest of the project never touches py-libp2p directly.
"""
