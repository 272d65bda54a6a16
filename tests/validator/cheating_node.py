"""A node that cheats, for tests only: the real `dolphin node` program with its engine swapped.

    python -m tests.validator.cheating_node CHEAT [STRENGTH] -- [dolphin options...] node [node options...]

CHEAT is one of `cheats.WEIGHT_CHEATS` (the weights change in memory after the genuine, verified folder
is loaded, so the node announces the model id it does not serve), or `slow` (answers slowly while its
signed benchmark attestation claims twenty times its measured speed). Everything else is the product's
code path, unchanged: the cheat is a patch applied here, never a switch in the product.
"""

import contextlib
import dataclasses
import sys

import node.daemon
from tests.validator.cheats import WEIGHT_CHEATS, SlowEngine, modify_weights


def main() -> None:
    separator = sys.argv.index("--")
    cheat, *strength = sys.argv[1:separator]
    open_engine, cached_benchmark = node.daemon._open_engine, node.daemon.cached_benchmark

    @contextlib.asynccontextmanager
    async def open_cheating_engine(config, progress):  # type: ignore[no-untyped-def]
        async with open_engine(config, progress) as engine:
            if cheat in WEIGHT_CHEATS:
                modify_weights(engine.model, cheat, float(strength[0]) if strength else 1e-3)
                yield engine
            elif cheat == "slow":
                yield SlowEngine(engine, delay=float(strength[0]) if strength else 0.05)
            else:
                raise SystemExit(f"unknown cheat {cheat!r}")

    async def boasting_benchmark(*args, **kwargs):  # type: ignore[no-untyped-def]
        result, cached = await cached_benchmark(*args, **kwargs)
        faster = {
            name: getattr(result, name) * 20 for name in ("prefill_tps", "decode_tps", "decode_tps_streams")
        }
        return dataclasses.replace(result, **faster), cached

    node.daemon._open_engine = open_cheating_engine
    if cheat == "slow":
        node.daemon.cached_benchmark = boasting_benchmark
    from cli.main import main as dolphin

    dolphin(sys.argv[separator + 1 :])


if __name__ == "__main__":
    main()
