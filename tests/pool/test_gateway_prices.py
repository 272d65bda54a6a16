"""/v1/models prices: the chain's, and unknown (null) until the chain answered, never the configured 0."""

from types import SimpleNamespace

import pytest

from chain.errors import ChainError
from pool.gateway import Gateway
from pool.gateway_config import GatewayConfig

pytestmark = pytest.mark.unit

MODEL = b"\x07" * 32


class _Chain:
    """A chain double whose Credits price answers only once `up` is set."""

    def __init__(self) -> None:
        self.up = False

    def price_of(self, model: bytes) -> int:
        if not self.up:
            raise ChainError("the chain is not answering yet")
        return 250_000  # 0.25 in 6 decimals


def _gateway(tmp_path, chain) -> Gateway:  # type: ignore[no-untyped-def]
    pool = SimpleNamespace(model=MODEL)
    watcher = SimpleNamespace(
        has_chain=chain is not None,
        watched=lambda: [pool],
        candidates=lambda model: [(SimpleNamespace(peer_id="p", attested_tokens_per_s=10.0), None)],
        name_of=lambda model: "m",
    )
    client = SimpleNamespace(watcher=watcher, chain=chain, router=SimpleNamespace(statistics=lambda now: {}))
    return Gateway(GatewayConfig(data_dir=tmp_path), client, book=None)  # type: ignore[arg-type]


@pytest.mark.trio
async def test_a_price_the_chain_has_not_given_yet_is_null_not_zero(tmp_path):
    chain = _Chain()
    gateway = _gateway(tmp_path, chain)
    assert gateway._model_entry(MODEL)["pricing"]["prompt"] is None
    await gateway._read_chain_prices([SimpleNamespace(model=MODEL)])  # down: logged, still unknown
    assert gateway._model_entry(MODEL)["pricing"]["prompt"] is None
    chain.up = True
    await gateway._read_chain_prices([SimpleNamespace(model=MODEL)])
    assert gateway._model_entry(MODEL)["pricing"]["prompt"] == "0.25"
    without_chain = _gateway(tmp_path, None)
    assert without_chain._model_entry(MODEL)["pricing"]["prompt"] == "0"  # the configured list's
