"""A node that cheats, for tests only: the real `dolphin node` program with its engine swapped.

    python -m tests.validator.cheating_node CHEAT [STRENGTH] -- [dolphin options...] node [node options...]

CHEAT is one of `cheats.WEIGHT_CHEATS` (the weights change in memory after the genuine, verified folder
is loaded, so the node announces the model id it does not serve), `slow` (answers slowly while its
signed benchmark attestation claims twenty times its measured speed), `inflate [EXTRA]` (bills EXTRA
prompt tokens more than it served, 3 by default: far inside the byte bound), or `selective MARKER`: a
perfect challenge detector, for tests of organic audits — requests whose first user message starts with
MARKER (the test's users) get another seed's model, every other request (the validators' challenges) the
genuine one. Everything else is the product's code path, unchanged: the cheat is a patch applied here,
never a switch in the product.
"""

import contextlib
import dataclasses
import sys

import node.slots
from tests.validator.cheats import (
    WEIGHT_CHEATS,
    InflatingEngine,
    SelectiveEngine,
    SlowEngine,
    modified_engine,
    modify_weights,
)


def _first_user(request) -> str:  # type: ignore[no-untyped-def]
    return next((turn.content for turn in request.messages if turn.role == "user"), "")


def main() -> None:
    separator = sys.argv.index("--")
    cheat, *strength = sys.argv[1:separator]
    open_engine, cached_benchmark = node.slots._open_engine, node.slots.cached_benchmark

    @contextlib.asynccontextmanager
    async def open_cheating_engine(config, *where_and_progress):  # type: ignore[no-untyped-def]
        async with open_engine(config, *where_and_progress) as engine:
            if cheat in WEIGHT_CHEATS:
                modify_weights(engine.model, cheat, float(strength[0]) if strength else 1e-3)
                yield engine
            elif cheat == "slow":
                yield SlowEngine(engine, delay=float(strength[0]) if strength else 0.05)
            elif cheat == "inflate":
                extra = int(strength[0]) if strength else 3
                yield InflatingEngine(engine, eos_id=engine.tokenizer.eos_token_id, extra_prompt=extra)
            elif cheat == "selective":
                marker = strength[0]
                other = modified_engine(config.model, "other-seed", max_batch=4)
                try:
                    yield SelectiveEngine(
                        engine, other, lambda request: _first_user(request).startswith(marker)
                    )
                finally:
                    await other.aclose()
            else:
                raise SystemExit(f"unknown cheat {cheat!r}")

    async def boasting_benchmark(*args, **kwargs):  # type: ignore[no-untyped-def]
        result, cached = await cached_benchmark(*args, **kwargs)
        faster = {
            name: getattr(result, name) * 20 for name in ("prefill_tps", "decode_tps", "decode_tps_streams")
        }
        return dataclasses.replace(result, **faster), cached

    node.slots._open_engine = open_cheating_engine
    if cheat == "slow":
        node.slots.cached_benchmark = boasting_benchmark
    from cli.main import main as dolphin

    dolphin(sys.argv[separator + 1 :])


if __name__ == "__main__":
    main()
