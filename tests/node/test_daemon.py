"""`dolphin node` as a process: light peers ask it directly and through a relay, it survives kill -9 with
every acknowledged receipt, hostile traffic and vanishing clients leave it up, it keeps prompts out of its
logs and data dir, puts its operator's local API first, and drains on SIGTERM."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from node.processes import node_process
from node.testing import find_member, watch_pool
from p2p import DhtMode, HostConfig, P2PError, open_host
from p2p.testing import wait_until
from pool import InferenceFailed, complete
from pool.attestations import attestation_validator
from protocols import e2e, envelope
from protocols.ids import INFERENCE_PROTOCOL, attestation_topic
from protocols.inference import ClientExchange, verify_countersigned_receipt
from protocols.keys import Identity
from protocols.messages import BenchmarkAttestation, ResponseEnd
from protocols.schema import decode_message
from protocols.testing import make_request

pytestmark = [pytest.mark.integration, pytest.mark.chain, pytest.mark.process]

ROOT = Path(__file__).resolve().parents[2]
MARKER = "zebra-marker-7f3a91"


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from node.models import load_manifest

    return tiny_model_dir, load_manifest(tiny_model_dir).model_id()


def _start(data_dir: Path, model_dir: Path, *args: str, listen: bool = True):
    node = node_process(data_dir, model_dir, *args, listen=listen)
    try:
        trio.run(node.wait_ready, 180.0)
    except BaseException:
        print(node.log_tail())
        node.stop()
        raise
    return node


@contextlib.asynccontextmanager
async def _client(tmp_path: Path, relay):
    config = HostConfig(
        tmp_path / f"client-{os.urandom(4).hex()}", bootstrap=(relay.addr,), dht_mode=DhtMode.CLIENT
    )
    async with open_host(config) as host:
        yield host


async def _ask(client, member, prompt: str = "What is the capital of France?", **kwargs):
    return await complete(client, member.contact, [("user", prompt)], identity=Identity.generate(), **kwargs)


@pytest.mark.slow
@pytest.mark.trio
async def test_a_node_process_answers_a_light_peer_directly_and_through_a_relay(
    tmp_path, relay, model, monkeypatch
):
    model_dir, model_id = model
    monkeypatch.setenv("DOLPHIN_NODE_ATTESTATION_INTERVAL", "0.5")  # republish often: the client joins late
    direct = await trio.to_thread.run_sync(
        lambda: _start(tmp_path / "direct", model_dir, "--bootstrap", relay.addr)
    )
    hidden = await trio.to_thread.run_sync(
        lambda: _start(tmp_path / "hidden", model_dir, "--bootstrap", relay.addr, listen=False)
    )
    try:
        assert hidden.ready["listen_addrs"] == [] and "/p2p-circuit/" in hidden.ready["circuit_addrs"][0]
        assert hidden.ready["local_api"].startswith("http://127.0.0.1:")
        async with _client(tmp_path, relay) as client:
            view = await watch_pool(client, model_id)
            validate = attestation_validator(model_id, is_validator_peer=lambda key: False)
            attested = await client.gossip.subscribe(attestation_topic(model_id), validate)
            for node in (direct, hidden):
                member = await find_member(client, view, node.peer_id)
                assert not member.registered  # no chain, no binding: announced as unregistered
                completion = await _ask(client, member, max_tokens=12)
                assert completion.tokens_out == 12 and completion.receipt_stored
            # Each node's signed benchmark reached the client (checked by the topic's validator).
            benchmarked = set()
            with trio.fail_after(30):
                async for message in attested:
                    attestation = envelope.open_signed(message.data, BenchmarkAttestation).message
                    assert attestation.decode_tps_milli > 0 and attestation.engine == "transformers"
                    benchmarked.add(message.origin)
                    if benchmarked == {direct.peer_id, hidden.peer_id}:
                        break
        rows = _receipts(tmp_path / "hidden")
        assert len(rows) == 1 and rows[0]["tokens_out"] == 12 and rows[0]["client"] is None
    finally:
        direct.stop()
        hidden.stop()


def _receipts(data_dir: Path, *extra: str) -> list[dict]:
    """`dolphin node receipts --json` in its own process, as an operator runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "node", "receipts", "--data-dir", str(data_dir), "--json", *extra],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    return json.loads(out.stdout)


@pytest.mark.slow
@pytest.mark.trio
async def test_kill_9_under_load_loses_no_acknowledged_receipt_and_restarts_on_the_same_data_dir(
    tmp_path, relay, model
):
    model_dir, model_id = model
    data_dir = tmp_path / "node"
    node = await trio.to_thread.run_sync(lambda: _start(data_dir, model_dir, "--bootstrap", relay.addr))
    acknowledged: list[bytes] = []
    answered_sealed: list[tuple[bytes, bytes]] = []
    try:
        async with _client(tmp_path, relay) as client:
            member = await find_member(client, await watch_pool(client, model_id), node.peer_id)

            async def keep_asking() -> None:
                while True:
                    try:
                        completion = await _ask(client, member, max_tokens=6, timeout=10, ack_timeout=10)
                    except InferenceFailed:
                        return  # the node died under us
                    if completion.receipt_stored:
                        acknowledged.append(completion.countersigned_receipt)

            async def sealed_before_the_kill() -> None:
                request = make_request(
                    Identity.generate(), model=model_id, node_key=member.contact.node_key, max_tokens=2
                )
                signed = envelope.sign(request, Identity.generate(), ttl_ms=60_000, compress=False)
                sealed, key = e2e.seal(signed, member.contact.encryption_key)
                stream = await client.open_stream(node.peer_id, INFERENCE_PROTOCOL)
                await stream.write_message(sealed)
                await stream.read_message(1 << 16, timeout=10)
                await stream.reset()
                answered_sealed.append((sealed, key))

            await sealed_before_the_kill()
            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(keep_asking)
                await wait_until(lambda: len(acknowledged) >= 12, timeout=120)
                node.process.send_signal(signal.SIGKILL)
                node.process.wait()
    finally:
        node.stop()
    assert node.process.returncode == -signal.SIGKILL
    assert acknowledged

    stored = {row["digest"] for row in _receipts(data_dir)}
    missing = [r for r in acknowledged if verify_countersigned_receipt(r).digest.hex() not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged receipts were lost"

    again = await trio.to_thread.run_sync(lambda: _start(data_dir, model_dir, "--bootstrap", relay.addr))
    try:
        assert again.peer_id == node.peer_id  # same keys from the same data dir
        async with _client(tmp_path, relay) as client:
            member = await find_member(client, await watch_pool(client, model_id), again.peer_id)
            assert (await _ask(client, member, max_tokens=3)).receipt_stored
            # A request answered before the crash, replayed after it, is still refused.
            sealed, key = answered_sealed[0]
            stream = await client.open_stream(again.peer_id, INFERENCE_PROTOCOL)
            await stream.write_message(sealed)
            opener = e2e.StreamOpener(key, await stream.read_message(1 << 16, timeout=10))
            plaintext, final = opener.open(await stream.read_message(1 << 16, timeout=10))
            end = decode_message(plaintext, ResponseEnd)
            assert final and "already accepted" in end.error
    finally:
        again.stop()


@pytest.mark.slow
@pytest.mark.trio
async def test_hostile_and_vanishing_clients_leave_the_daemon_up_and_prompts_out_of_its_files(
    tmp_path, relay, model
):
    model_dir, model_id = model
    data_dir = tmp_path / "node"
    node = await trio.to_thread.run_sync(lambda: _start(data_dir, model_dir, "--bootstrap", relay.addr))
    try:
        # The attacker is another peer than the honest client: the node's answer to abuse (resetting
        # streams, even connections) must not reach the client's streams.
        async with _client(tmp_path, relay) as client, _client(tmp_path, relay) as attacker:
            member = await find_member(client, await watch_pool(client, model_id), node.peer_id)
            contact = member.contact
            await attacker.connect(node.ready["listen_addrs"][0])

            async def raw(data: bytes) -> None:
                with contextlib.suppress(P2PError):
                    stream = await attacker.open_stream(node.peer_id, INFERENCE_PROTOCOL)
                    await stream.write_message(data)
                    with contextlib.suppress(P2PError):
                        await stream.read(1 << 16, timeout=5)
                    await stream.close()

            def signed(now_ms: int | None = None, **fields) -> bytes:
                values = dict(model=model_id, node_key=contact.node_key, request_id=os.urandom(16))
                request = make_request(Identity.generate(), prompt=f"{MARKER} please", **(values | fields))
                return envelope.sign(
                    request, Identity.generate(), now_ms=now_ms, ttl_ms=60_000, compress=False
                )

            async def hostile() -> None:
                await raw(os.urandom(500))  # garbage
                await raw(b"\x00" * 40)  # malformed
                forged = signed()
                await raw(e2e.seal(forged[:-1] + bytes([forged[-1] ^ 1]), contact.encryption_key)[0])
                await raw(
                    e2e.seal(signed(node_key=os.urandom(32)), contact.encryption_key)[0]
                )  # misaddressed
                expired = signed(now_ms=time.time_ns() // 1_000_000 - 120_000)
                await raw(e2e.seal(expired, contact.encryption_key)[0])
                sealed = e2e.seal(signed(max_tokens=2), contact.encryption_key)[0]
                await raw(sealed)
                await raw(sealed)  # replayed
                with contextlib.suppress(P2PError):  # oversized
                    stream = await attacker.open_stream(node.peer_id, INFERENCE_PROTOCOL)
                    await stream.write(b"\xff\xff\xff\xff\x0f")
                    await stream.read(16, timeout=5)

            async def vanish() -> None:
                exchange = ClientExchange(
                    make_request(
                        Identity.generate(),
                        prompt=MARKER,
                        model=model_id,
                        node_key=contact.node_key,
                        max_tokens=1500,
                    ),
                    identity=Identity.generate(),
                    node_encryption_key=contact.encryption_key,
                )
                stream = await attacker.open_stream(node.peer_id, INFERENCE_PROTOCOL)
                await stream.write_message(exchange.sealed_request)
                await stream.read_message(1 << 16, timeout=10)
                await stream.reset()

            answers = []

            async def honest() -> None:
                answers.append(await _ask(client, member, f"Tell me about {MARKER}", max_tokens=30))

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(honest)
                nursery.start_soon(hostile)
                nursery.start_soon(vanish)
            assert [a.tokens_out for a in answers] == [30, 30, 30] and all(a.receipt_stored for a in answers)

            async with httpx.AsyncClient(base_url=node.ready["local_api"], timeout=60) as http:
                local = await http.post(
                    "/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": MARKER}], "max_tokens": 5},
                )
                assert local.status_code == 200
                assert local.json()["usage"]["completion_tokens"] == 5
                metrics = (await http.get("/metrics")).text
            for reason in ("malformed", "bad_signature", "misaddressed", "expired", "replayed", "oversized"):
                assert _metric(metrics, f'dolphin_node_refusals_total{{reason="{reason}"}}') >= 1, reason
            assert _metric(metrics, 'dolphin_node_requests_total{source="local"}') == 1
            assert (
                _metric(metrics, 'dolphin_node_requests_total{source="network"}') >= 4
            )  # 3 + the replayed one
            assert _metric(metrics, "dolphin_node_abandoned_total") >= 1  # the one that vanished
            assert node.alive()
            assert (await _ask(client, member, max_tokens=2)).receipt_stored  # still serving
    finally:
        code = node.stop()
    assert code == 0  # SIGTERM: a clean drain
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert MARKER.encode() not in path.read_bytes(), f"the prompt leaked into {path}"


@pytest.mark.slow
@pytest.mark.trio
async def test_the_local_api_answers_while_network_requests_wait(tmp_path, relay, model):
    model_dir, model_id = model
    node = await trio.to_thread.run_sync(
        lambda: _start(tmp_path / "node", model_dir, "--bootstrap", relay.addr, "--max-batch", "1")
    )
    first_tokens: dict[str, float] = {}
    try:
        async with _client(tmp_path, relay) as client:
            member = await find_member(client, await watch_pool(client, model_id), node.peer_id)

            async def network(name: str, tokens: int) -> None:
                def seen(_text: str) -> None:
                    first_tokens.setdefault(name, time.monotonic())

                await _ask(client, member, max_tokens=tokens, on_text=seen)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(network, "running", 1500)  # up to the model's context: a while
                await wait_until(lambda: "running" in first_tokens, timeout=30)
                nursery.start_soon(network, "waiting-1", 20)
                nursery.start_soon(network, "waiting-2", 20)
                async with httpx.AsyncClient(base_url=node.ready["local_api"], timeout=60) as http:
                    with trio.fail_after(30):
                        while _metric((await http.get("/metrics")).text, "dolphin_node_engine_waiting") < 2:
                            await trio.sleep(0.02)
                    response = await http.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 8})
                    local_done = time.monotonic()
                assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 8
        # The local answer came before either waiting network request got its first token.
        assert all(first_tokens[name] > local_done for name in ("waiting-1", "waiting-2"))
    finally:
        node.stop()


def _metric(text: str, name: str) -> float:
    """A sample's value from Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow
@pytest.mark.trio
async def test_sigterm_drains_in_flight_answers_refuses_new_ones_and_exits_zero(tmp_path, relay, model):
    model_dir, model_id = model
    node = await trio.to_thread.run_sync(
        lambda: _start(tmp_path / "node", model_dir, "--bootstrap", relay.addr, "--max-batch", "1")
    )
    try:
        async with _client(tmp_path, relay) as client:
            view = await watch_pool(client, model_id)
            member = await find_member(client, view, node.peer_id)
            assert member.capacity == 1
            started = trio.Event()
            result = {}

            async def long_answer() -> None:
                result["completion"] = await _ask(
                    client, member, max_tokens=300, on_text=lambda _t: started.set()
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(long_answer)
                await started.wait()
                node.process.send_signal(signal.SIGTERM)
                with pytest.raises(InferenceFailed, match="shutting down"):
                    while True:  # until the signal is handled, requests may still be taken
                        await _ask(client, member, max_tokens=1)
                        await trio.sleep(0.05)
                # Heartbeats now say the node takes nothing.
                await wait_until(lambda: view.members() and view.members()[0].capacity == 0, timeout=10)
            assert result["completion"].tokens_out == 300 and result["completion"].receipt_stored
        assert await trio.to_thread.run_sync(node.process.wait, 60) == 0
        assert not (tmp_path / "node" / "ready.json").exists()
        log = node.log_tail(50_000)
        assert "draining" in log and "stopped" in log
    finally:
        node.stop()


@pytest.fixture
def deployed(tmp_path, deployed_chain):
    """A dev chain with the system deployed; an operator (dev key 4) and a client with credit (key 5)."""
    from chain.client import ChainClient

    wallet = ChainClient(deployed_chain.rpc_url, deployed_chain.deployment, deployed_chain.keys[5])
    wallet.credits_deposit(5_000_000)
    yield (
        deployed_chain,
        ChainClient(deployed_chain.rpc_url, deployed_chain.deployment, deployed_chain.keys[4]),
        wallet,
    )


@pytest.mark.slow
@pytest.mark.trio
async def test_a_registered_node_on_a_chain_shows_its_operator_and_serves_paying_clients_only(
    tmp_path, relay, model, deployed
):
    from chain.client import ChainClient
    from node.registration import register_node
    from protocols.eth import EthAccount
    from protocols.messages import CreditAuthorisation, eth_sign

    chain, operator, wallet = deployed
    model_dir, model_id = model
    data_dir = tmp_path / "node"
    binding = await trio.to_thread.run_sync(register_node, data_dir, operator)
    chain_args = ("--rpc-url", chain.rpc_url, "--deployment", str(chain.path), "--paid-only")
    node = await trio.to_thread.run_sync(
        lambda: _start(data_dir, model_dir, "--bootstrap", relay.addr, *chain_args)
    )
    try:
        assert node.ready["registered"] and node.ready["operator"] == "0x" + binding.operator.hex()
        async with _client(tmp_path, relay) as client:
            view = await watch_pool(client, model_id, binding_domain=operator.domain("Bonding"))
            member = await find_member(client, view, node.peer_id)
            assert member.registered and member.operator == binding.operator

            def authorise(
                session: Identity, max_credits: int, key: str = chain.keys[5]
            ) -> CreditAuthorisation:
                account = EthAccount(bytes.fromhex(key.removeprefix("0x")))
                return eth_sign(
                    CreditAuthorisation,
                    account,
                    operator.domain("Credits"),
                    client=account.address,
                    session_key=session.public_key,
                    model=model_id,
                    max_credits=max_credits,
                    nonce=1,
                    expiry=int(time.time()) + 3600,
                )

            session = Identity.generate()
            paid = await complete(
                client,
                member.contact,
                [("user", "Hello")],
                identity=session,
                max_tokens=5,
                credit=authorise(session, 1_000_000),
            )
            assert paid.receipt_stored
            session = Identity.generate()
            # A wallet with no credit: its authorisation, however large, covers nothing.
            with pytest.raises(InferenceFailed, match="paid requests only"):
                await complete(
                    client,
                    member.contact,
                    [("user", "Hi")],
                    identity=session,
                    credit=authorise(session, 10**12, key=chain.keys[8]),
                )
            with pytest.raises(InferenceFailed, match="paid requests only"):  # no authorisation at all
                await _ask(client, member, max_tokens=2)
            # Attack: deposit, ask to withdraw it all, then use the network. The credit still sits in the
            # contract (debitable while it waits) but it is not spendable: no paid answers on it.
            leaving = ChainClient(chain.rpc_url, chain.deployment, chain.keys[6])
            await trio.to_thread.run_sync(leaving.credits_deposit, 5_000_000)
            await trio.to_thread.run_sync(leaving.credits_request_withdrawal, 5_000_000)
            session = Identity.generate()
            with pytest.raises(InferenceFailed, match="paid requests only"):
                await complete(
                    client,
                    member.contact,
                    [("user", "Hi")],
                    identity=session,
                    max_tokens=2,
                    credit=authorise(session, 1_000_000, key=chain.keys[6]),
                )
    finally:
        node.stop()
    (row,) = _receipts(data_dir)
    assert row["client"] == wallet.address.lower() and row["tokens_out"] == 5
