"""Every built-in variant, found through the registry so a new one is covered with no edit
here: it builds at the cpu-fast recipe shrunk to two layers, trains 30 steps without a NaN,
round-trips through a checkpoint, and decodes with the cache exactly as the plain loop does,
well past block_size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minigpt.checkpoint import load_checkpoint, save_checkpoint
from minigpt.config import PRESETS, Config
from minigpt.data import CharTokenizer
from minigpt.generate import generate
from minigpt.step import TrainStep
from minigpt.variants import discover

from .conftest import BLOCK, VOCAB, plain_loop, random_model, tiny_recipe, train_on_a_cycle

VARIANTS = discover().names()
TRAIN_STEPS = 30


def variant_config(name: str) -> Config:
    """The variant applied to the cpu-fast recipe at a tiny size: two layers of 16 dims."""
    return discover().get(name).configure(tiny_recipe())


def test_the_registry_holds_the_modern_zoo() -> None:
    new = {"post-norm", "sandwich-norm", "parallel-block", "x0-skips", "unet-skips", "logit-softcap", "z-loss",
           "tied-head", "zero-init-proj", "token-shift", "wsd-schedule", "qk-norm", "gqa", "mqa", "sliding-window",
           "partial-rope", "rope-base-1000", "geglu", "dyt", "lion"}  # fmt: skip
    assert new <= set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_the_variant_trains_without_nan(name: str) -> None:
    losses = train_on_a_cycle(variant_config(name), TRAIN_STEPS)
    assert torch.isfinite(losses).all()
    assert losses[-5:].mean() < losses[:5].mean()


@pytest.mark.parametrize("name", VARIANTS)
def test_the_variant_takes_a_step_at_the_default_size_and_at_an_odd_depth(name: str) -> None:
    variant = discover().get(name)
    for base in (PRESETS["cpu-fast"].config(), PRESETS["cpu-fast"].config().replace(n_layer=3)):
        cfg = variant.configure(base.replace(batch_size=2))
        step = TrainStep(cfg, "cpu", seed=0)
        tokens = torch.randint(cfg.vocab_size, (cfg.batch_size, cfg.block_size + 1))
        assert torch.isfinite(step.step(tokens[:, :-1], tokens[:, 1:]))


@pytest.mark.parametrize("name", VARIANTS)
def test_the_variant_round_trips_through_a_checkpoint(name: str, tmp_path: Path) -> None:
    model = random_model(variant_config(name))
    save_checkpoint(tmp_path, model, CharTokenizer(VOCAB), variant=name)
    loaded, _, meta = load_checkpoint(tmp_path)
    assert meta["variant"] == name and loaded.cfg == model.cfg
    idx = torch.randint(len(VOCAB), (2, BLOCK))
    torch.testing.assert_close(loaded.eval()(idx)[0], model(idx)[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_cached_decoding_of_the_variant_equals_the_plain_loop_past_block_size(name: str) -> None:
    model = random_model(variant_config(name))
    prompt, steps = [1, 2, 3], 3 * BLOCK
    assert generate(model, prompt, steps, temperature=0)[0].tolist() == plain_loop(model, prompt, steps)
