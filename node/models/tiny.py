"""A tiny Llama with a byte-level BPE tokenizer, built offline and bit-for-bit reproducibly.

Tests and small demo networks need a real model that loads through the same code paths as a production one
(Hugging Face folder, chat template, engines) without a hub download. Everything here is fixed: the training
text, the tokenizer trainer's settings and the seed of the random initialisation, so two builds produce
byte-identical folders and therefore the same manifest hash. The weights are random: the model answers
deterministically, not sensibly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from node.models.importer import import_model
from node.models.manifest import ModelManifest

TINY_MODEL_NAME = "dolphin-tiny-llama"
SEED = 20261122
TINY_SOURCE = f"built offline by dolphin (seed {SEED})"
VOCAB_SIZE = 640
# Long enough for answers that take seconds to generate, which tests of cancellation and queueing need.
MAX_MODEL_LEN = 2048
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# ChatML, the template family SmolLM2 uses, so prompts are built the same way for the tiny and real models.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Training text for the tokenizer: enough variety of English words, digits and punctuation for a small
# vocabulary. Kept in the source so the build needs nothing from outside.
_CORPUS = """
Dolphin Network is a decentralized network for artificial intelligence inference. GPU owners run a
headless node that joins a pool of nodes serving the same model. Clients send encrypted prompts through
a peer to peer overlay, and validators check that every node runs what it claims.
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
What is the capital of France? The capital of France is Paris. How many legs does a spider have?
A spider has eight legs. Explain why the sky is blue: sunlight scatters off molecules in the air, and
blue light scatters more than red light. Write a short poem about the sea, the waves and the moon.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 2026. Symbols: + - * / = < > ( ) [ ] { } , . ; : ! ? ' "
Tokens, rewards, staking, bonding, epochs, receipts, signatures and Merkle proofs settle on chain.
Hello! Thank you. Please summarize the following text in one sentence. Translate this into French.
def add(a, b): return a + b  # a small function in Python
""".strip()


def _training_lines() -> list[str]:
    return [line.strip() for line in _CORPUS.splitlines() if line.strip()]


def build_tokenizer():
    """Train the byte-level BPE tokenizer and wrap it for transformers, with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_lines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=MAX_MODEL_LEN,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(out_dir: Path) -> ModelManifest:
    """Write the tiny model folder (weights, config, tokenizer, manifest) into `out_dir`: the checkpoint,
    imported as `dolphin model import` imports any Hugging Face folder."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}-", dir=out_dir.parent) as staging:
        write_tiny_checkpoint(Path(staging))
        return import_model(Path(staging), out_dir, name=TINY_MODEL_NAME, replace=True, source=TINY_SOURCE)


def write_tiny_checkpoint(out_dir: Path) -> None:
    """Write the tiny model as a plain Hugging Face folder (weights, config, tokenizer; no manifest)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=172,
        num_hidden_layers=2,
        # head_dim = 64 / 2 = 32: vLLM's CPU attention only takes head sizes 32, 64, 80, 96, 112, 128, 160,
        # 192, 224, 256 and 512, and both engines must serve this one model. One KV head keeps it grouped-
        # query attention like the real Llamas.
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=MAX_MODEL_LEN,
        # Wider than the default 0.02, whose near-uniform logits make every prompt answer the same repeated
        # token: with 0.3 greedy answers differ by prompt, so comparing two engines token by token means
        # something.
        initializer_range=0.3,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # The key checkpoints' config.json carry: transformers takes it, its annotations omit it.
        torch_dtype="float32",  # type: ignore[call-arg]
        architectures=["LlamaForCausalLM"],
    )
    # The generator is private to this build so that the caller's global RNG state neither changes the
    # weights nor is changed by building them.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
