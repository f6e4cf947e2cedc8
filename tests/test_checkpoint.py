"""Checkpoints: safetensors + JSON round trips exactly; damage is one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from minigpt.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minigpt.config import Config
from minigpt.data import CharTokenizer
from minigpt.model import GPT

from .conftest import TINY


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, GPT]:
    torch.manual_seed(0)
    model = GPT(Config(**TINY, vocab_size=5, tie_weights=True, position="rope+learned")).eval()
    save_checkpoint(tmp_path, model, CharTokenizer("abcde"), variant="baseline", step=7, val_loss=1.5)
    return tmp_path, model


def test_round_trip_gives_identical_logits_and_metadata(saved: tuple[Path, GPT]) -> None:
    directory, model = saved
    loaded, tokenizer, meta = load_checkpoint(directory / "model.safetensors")
    idx = torch.randint(5, (2, 16))
    assert torch.equal(loaded(idx)[0], model(idx)[0])
    assert loaded.lm_head.weight is loaded.wte.weight
    assert tokenizer.chars == "abcde"
    assert (meta["variant"], meta["step"], meta["val_loss"]) == ("baseline", 7, 1.5)
    assert sorted(p.name for p in directory.iterdir()) == ["model.json", "model.safetensors"]


def test_corrupt_weights_are_one_clear_error(saved: tuple[Path, GPT]) -> None:
    directory, _ = saved
    (directory / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt or do not match"):
        load_checkpoint(directory)


def test_weights_that_do_not_fit_the_config_are_one_clear_error(saved: tuple[Path, GPT]) -> None:
    directory, _ = saved
    meta = json.loads((directory / "model.json").read_text())
    meta["config"]["n_embd"] = 32
    (directory / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match model.json"):
        load_checkpoint(directory)


def test_unreadable_metadata_and_missing_files_are_one_clear_error(saved: tuple[Path, GPT], tmp_path: Path) -> None:
    directory, _ = saved
    (directory / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(directory)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
