"""Wire formats of the Dolphin Network: sans-IO, no sockets, no event loop.

Everything that crosses the network is defined, encoded, signed and encrypted here, so that every other
part (p2p, pool, node, validator, chain) speaks through one small, hostile-input-proof library.
"""
