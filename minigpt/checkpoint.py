"""Checkpoints: weights in model.safetensors, everything else in model.json. Loading reads
tensors and JSON only; nothing is ever unpickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from minigpt import atomic
from minigpt.config import Config
from minigpt.data import CharTokenizer
from minigpt.errors import UserError
from minigpt.model import GPT

WEIGHTS, METADATA = "model.safetensors", "model.json"


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit its metadata."""


def save_checkpoint(directory: str | Path, model: GPT, tokenizer: CharTokenizer, **meta: Any) -> None:
    """Write weights, then metadata (each atomically); `meta` holds variant, step, val_loss..."""
    directory = Path(directory)
    with atomic.atomic_target(directory / WEIGHTS) as tmp:
        save_model(model, str(tmp))
    atomic.write_json(directory / METADATA, {"config": model.cfg.to_dict(), "vocab": tokenizer.to_dict(), **meta})


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[GPT, CharTokenizer, dict[str, Any]]:
    """`path` is a checkpoint directory or either of its two files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    directory = path if path.is_dir() else path.parent
    weights, metadata = directory / WEIGHTS, directory / METADATA
    for file in (weights, metadata):
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} does not exist")
    try:
        meta = json.loads(metadata.read_text(encoding="utf-8"))
        cfg = Config.from_dict(meta["config"])
        tokenizer = CharTokenizer.from_dict(meta["vocab"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint metadata {metadata} is unreadable: {error}") from None
    if tokenizer.vocab_size != cfg.vocab_size:
        raise CheckpointError(
            f"{metadata}: vocabulary has {tokenizer.vocab_size} characters, config says {cfg.vocab_size}"
        )
    model = GPT(cfg)
    try:
        load_model(model, str(weights), strict=True, device=device)
    except (SafetensorError, RuntimeError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint weights {weights} are corrupt or do not match model.json: {first_line}"
        ) from None
    return model.to(device).eval(), tokenizer, meta
