"""The self-benchmark: measured once per model, engine, hardware and settings, then signed as attestations."""

import dataclasses

import pytest

from node.announce import detect_hardware
from node.benchmark import BENCHMARK_FILE, BenchmarkSettings, attestations, cached_benchmark
from p2p import GossipMessage, Verdict
from pool.attestations import attestation_validator
from protocols import envelope
from protocols.ids import attestation_topic
from protocols.keys import Identity, peer_id_from_public_key, peer_id_to_text
from protocols.messages import BenchmarkAttestation

pytestmark = pytest.mark.integration

SETTINGS = BenchmarkSettings(prompt_tokens=32, output_tokens=8, streams=4)


@pytest.mark.trio
async def test_the_benchmark_is_cached_until_what_it_measured_changes(tmp_path, tiny_engine):
    model, hardware = tiny_engine.loaded.manifest.model_id(), detect_hardware()
    steps = []
    first, cached = await cached_benchmark(
        tmp_path,
        tiny_engine,
        model=model,
        hardware=hardware,
        settings=SETTINGS,
        progress=lambda *a: steps.append(a),
    )
    assert not cached and (tmp_path / BENCHMARK_FILE).is_file()
    assert steps[-1][1:] == (8 * 5, 8 * 5)  # every token of one stream and of 4 streams was reported
    assert first.prompt_tokens == 32 and first.ttft_ms >= 0
    assert first.prefill_tps > 0 and first.decode_tps > 0 and first.decode_tps_streams > 0
    again, cached = await cached_benchmark(
        tmp_path, tiny_engine, model=model, hardware=hardware, settings=SETTINGS
    )
    assert cached and again == first
    other_gpu = dataclasses.replace(hardware, gpu_name="another GPU")
    _, cached = await cached_benchmark(
        tmp_path, tiny_engine, model=model, hardware=other_gpu, settings=SETTINGS
    )
    assert not cached
    _, cached = await cached_benchmark(
        tmp_path,
        tiny_engine,
        model=model,
        hardware=other_gpu,
        settings=dataclasses.replace(SETTINGS, streams=2),
    )
    assert not cached


@pytest.mark.trio
async def test_the_attestations_are_signed_by_the_node_and_pass_the_topic_validator(tmp_path, tiny_engine):
    model, hardware = tiny_engine.loaded.manifest.model_id(), detect_hardware()
    result, _ = await cached_benchmark(
        tmp_path, tiny_engine, model=model, hardware=hardware, settings=SETTINGS
    )
    node = Identity.generate()
    signed = attestations(result, node, model=model, engine=tiny_engine, hardware=hardware)
    validate = attestation_validator(model, is_validator_peer=lambda key: False)
    origin = peer_id_to_text(peer_id_from_public_key(node.public_key))
    concurrencies = []
    for data in signed:
        message = GossipMessage(attestation_topic(model), data, origin, origin, b"1")
        assert validate(message) is Verdict.ACCEPT
        attestation = envelope.open_signed(data, BenchmarkAttestation).message
        assert attestation.node_key == node.public_key and attestation.engine == "transformers"
        concurrencies.append(attestation.concurrency)
    assert concurrencies == [1, 4]
    # Someone else cannot publish numbers about this node.
    stranger = Identity.generate()
    claim = envelope.open_signed(signed[0], BenchmarkAttestation).message
    forged = envelope.sign(claim, stranger, ttl_ms=60_000)
    stranger_id = peer_id_to_text(peer_id_from_public_key(stranger.public_key))
    message = GossipMessage(attestation_topic(model), forged, stranger_id, stranger_id, b"2")
    assert validate(message) is Verdict.REJECT
