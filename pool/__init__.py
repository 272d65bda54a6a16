"""Model pools: membership view, benchmark attestations, request routing, failover and the light client."""
