"""The in-process engine on a GPU machine: greedy batched vs one at a time, throughput, TTFT, NVML owner path.

Not a `bench_*` module (it needs CUDA, and a machine without libp2p is enough): run it where a GPU is,
from the repository root, with `trio` importable (carry its wheel and outcome's and sniffio's if the
machine lacks them):

    CONFIG_FROM=DIR python3 tests/bench/gpu_engine.py      # results in $OUT/engine_gpu.json

Models are random-weight Llamas built on the spot in the shape of DIR's config.json (SmolLM2-135M's by
default, with its tokenizer files) and of a 0.5B Llama: their answers are meaningless but their speed and
numerics are those of real models of that size. Greedy ids of 16 answers decoded in one batch are compared
with the same answers decoded one at a time: on a GPU, matrix products over a batch may round differently
from those over one row, and this reports where (if anywhere) the ids part. The NVML part checks
`node.owner.gpu_sampler` against another process burning the GPU.
"""

import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))
# Import node.engines without node/__init__ (which pulls in libp2p, not installed on this machine).
package = types.ModuleType("node")
package.__path__ = [str(ROOT / "node")]
sys.modules["node"] = package

import torch  # noqa: E402
import trio  # noqa: E402

from node.engines.base import GenerationRequest  # noqa: E402
from node.engines.transformers import TransformersEngine  # noqa: E402
from node.models.manifest import ServingHints, build_manifest, write_manifest  # noqa: E402

OUT = Path(os.environ.get("OUT", "/tmp/out"))
OUT.mkdir(parents=True, exist_ok=True)
DEVICE = os.environ.get("CHECK_DEVICE", "cuda")
QUICK = os.environ.get("CHECK_QUICK") == "1"
HERE = Path(os.environ.get("CONFIG_FROM", ROOT / ".devdata" / "models" / "smollm2"))
results: dict = {"torch": torch.__version__, "device": DEVICE}


def log(*args):
    print(*args, flush=True)


def random_model(out: Path, **overrides) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        shutil.copy(HERE / name, out / name)
    config = LlamaConfig.from_dict({**json.loads((HERE / "config.json").read_text()), **overrides})
    torch.manual_seed(1)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    write_manifest(out, build_manifest(out, name=out.name, serving=ServingHints(2048, "float32", True)))
    return out


async def answer(engine, request):
    ids, logprobs, first = [], [], None
    started = time.perf_counter()
    async for piece in engine.generate(request):
        if piece.token_ids and first is None:
            first = time.perf_counter() - started
        ids += piece.token_ids
        logprobs += piece.logprobs
    return ids, logprobs, first


def requests(vocab: int, count: int, max_tokens: int) -> list[GenerationRequest]:
    rng = random.Random(3)
    out = []
    for _ in range(count):
        ids = tuple(rng.randrange(10, vocab) for _ in range(rng.randrange(16, 96)))
        out.append(GenerationRequest(prompt_ids=ids, max_tokens=max_tokens, temperature=0.0))
    return out


async def check_model(name: str, model_dir: Path) -> dict:
    report: dict = {}
    engine = TransformersEngine.open(model_dir, max_batch=16, threads=None, device=DEVICE, verify=False)
    vocab = engine.model.config.vocab_size
    await answer(engine, requests(vocab, 1, 4)[0])  # warm up
    reqs = requests(vocab, 16, 24 if QUICK else 48)
    alone = [await answer(engine, r) for r in reqs]
    together: list = [None] * len(reqs)

    async def run(i):
        together[i] = await answer(engine, reqs[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(reqs)):
            nursery.start_soon(run, i)
            await trio.sleep(0.002 * (i % 3))
    equal = sum(a[0] == t[0] for a, t in zip(alone, together, strict=True))
    divergence = [
        next((k for k in range(min(len(a[0]), len(t[0]))) if a[0][k] != t[0][k]), None)
        for a, t in zip(alone, together, strict=True)
    ]
    max_delta = max(
        abs(x - y) for a, t in zip(alone, together, strict=True) for x, y in zip(a[1], t[1], strict=False)
    )
    report["greedy_equal_answers"] = f"{equal}/{len(reqs)}"
    report["first_divergence_positions"] = [d for d in divergence if d is not None]
    report["max_abs_logprob_delta"] = max_delta
    report["distinct_tokens_in_answers"] = len({t for a in alone for t in a[0]})

    tokens = 64 if QUICK else 128
    load = requests(vocab, 16, tokens)
    started = time.perf_counter()
    one = await answer(engine, load[0])
    report["one_stream_tokens_per_s"] = round(len(one[0]) / (time.perf_counter() - started), 1)
    counts = []

    async def stream(i):
        counts.append(len((await answer(engine, load[i]))[0]))

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(16):
            nursery.start_soon(stream, i)
    report["batched_16_tokens_per_s"] = round(sum(counts) / (time.perf_counter() - started), 1)
    ttfts = [
        (await answer(engine, GenerationRequest(prompt_ids=r.prompt_ids, max_tokens=1)))[2] for r in load[:10]
    ]
    report["ttft_ms_median"] = round(statistics.median(ttfts) * 1000, 2)
    await engine.aclose()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()

    sequential = TransformersEngine.open(model_dir, max_batch=1, threads=None, device=DEVICE, verify=False)
    counts.clear()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(16):
            nursery.start_soon(stream_on, sequential, load[i], counts)
    report["one_at_a_time_16_tokens_per_s"] = round(sum(counts) / (time.perf_counter() - started), 1)
    report["batching_speedup"] = round(
        report["batched_16_tokens_per_s"] / report["one_at_a_time_16_tokens_per_s"], 2
    )
    await sequential.aclose()
    log(name, json.dumps(report))
    return report


async def stream_on(engine, request, counts):
    counts.append(len((await answer(engine, request))[0]))


def nvml_check() -> dict:
    from node.owner import gpu_sampler

    sampler = gpu_sampler()
    if sampler is None:
        return {"nvml": "not available"}
    report = {"nvml": "available"}
    sampler()
    time.sleep(1.5)
    report["share_before"] = sampler()
    burn = (
        "import torch,time\na=torch.randn(8192,8192,device='cuda')\nt=time.time()\n"
        "while time.time()-t<12: a@a"
    )
    out = subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "{burn}" >/dev/null 2>&1 & echo $!'],
        capture_output=True,
        text=True,
    )
    pid = int(out.stdout.split()[0])
    shares = []
    for _ in range(5):
        time.sleep(1.5)
        shares.append(sampler())
    report["shares_while_another_process_burns"] = shares
    with contextlib.suppress(ProcessLookupError):  # it may have finished its 12 s
        os.kill(pid, 9)
    time.sleep(3)
    sampler()
    time.sleep(1.5)
    report["share_after"] = sampler()
    return report


async def main():
    log(
        "torch",
        torch.__version__,
        "cuda",
        torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if DEVICE == "cuda" else "",
    )
    base = Path("/tmp/models")
    models = {"smollm2-shape-random": random_model(base / "smollm2-shape", max_position_embeddings=2048)}
    log("built the SmolLM2-shaped model")
    if not QUICK:
        models["llama-0.5b-shape-random"] = random_model(
            base / "llama-half",
            hidden_size=1536,
            intermediate_size=4096,
            num_hidden_layers=16,
            num_attention_heads=12,
            num_key_value_heads=4,
            max_position_embeddings=2048,
        )
    for name, path in models.items():
        try:
            results[name] = await check_model(name, path)
        except Exception as exc:  # keep going: report what failed
            import traceback

            traceback.print_exc()
            results[name] = {"error": repr(exc)}
        (OUT / "engine_gpu.json").write_text(json.dumps(results, indent=2))


trio.run(main)
if DEVICE == "cuda":
    try:
        results["owner_nvml"] = nvml_check()
    except Exception as exc:
        results["owner_nvml"] = {"error": repr(exc)}
(OUT / "engine_gpu.json").write_text(json.dumps(results, indent=2))
log(json.dumps(results, indent=2))
