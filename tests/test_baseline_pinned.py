"""The baseline is exactly today's: its initial weights, its weights after 20 training steps
on a fixed batch stream and those 20 losses, at a fixed seed, are bit-identical to the values
recorded before the block, residual, embedding, head, init and schedule registries existed.
A new Config key whose default changed the baseline's arithmetic, even by one rounding, fails
here. Pinned on one thread: a thread pool may sum in another order."""

from __future__ import annotations

import hashlib

import pytest
import torch

from minigpt.config import PRESETS, Config
from minigpt.step import TrainStep
from minigpt.train import lr_at

STEPS = 20
PINNED = {
    "cpu-fast": {
        "init": "10fdc4141fe2b866748cc4f0ab60b442a230af1a0424682963771dff503b4eea",
        "final": "e7eb427ae6b6edaa0f73aaad2cc182b2602e2581cb5f1a9607c93b2a38be83a0",
        "losses": [
            "0x1.0d09580000000p+2",
            "0x1.0c10900000000p+2",
            "0x1.0d724c0000000p+2",
            "0x1.0f32940000000p+2",
            "0x1.113b600000000p+2",
            "0x1.16bbb40000000p+2",
            "0x1.0de8560000000p+2",
            "0x1.1519da0000000p+2",
            "0x1.13a1240000000p+2",
            "0x1.164a6a0000000p+2",
            "0x1.17443a0000000p+2",
            "0x1.157e840000000p+2",
            "0x1.137bce0000000p+2",
            "0x1.15556a0000000p+2",
            "0x1.137dfe0000000p+2",
            "0x1.0dfaf00000000p+2",
            "0x1.0f48460000000p+2",
            "0x1.0ebb060000000p+2",
            "0x1.0f22920000000p+2",
            "0x1.0e1b040000000p+2",
        ],
    },
    "reference": {
        "init": "ff1f0abd562170dfcf4306ec5dae7cabe84a3d0d84d51c349751b0fe06a4a139",
        "final": "a1032639263bc9f379e0816155808aa042b4a32db80b494f25477d96bb68c051",
        "losses": [
            "0x1.0e38080000000p+2",
            "0x1.0c78460000000p+2",
            "0x1.0d3fc20000000p+2",
            "0x1.0f65760000000p+2",
            "0x1.0ec5400000000p+2",
            "0x1.0eb3e20000000p+2",
            "0x1.0cd0680000000p+2",
            "0x1.0d9f280000000p+2",
            "0x1.0be6140000000p+2",
            "0x1.0e41f40000000p+2",
            "0x1.0e1e180000000p+2",
            "0x1.0c3c4c0000000p+2",
            "0x1.0c79880000000p+2",
            "0x1.0c821a0000000p+2",
            "0x1.0c48b40000000p+2",
            "0x1.0bc9080000000p+2",
            "0x1.0c56040000000p+2",
            "0x1.0d9f440000000p+2",
            "0x1.0d63a00000000p+2",
            "0x1.0bfa120000000p+2",
        ],
    },
}


def params_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def pinned_run(cfg: Config) -> dict:
    """Initial and final weights' hashes and the losses (float.hex) of 20 steps on the schedule."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        step = TrainStep(cfg, "cpu", seed=1234)
        init = params_sha256(step.model)
        batches = torch.Generator().manual_seed(99)
        losses = []
        with step.precision.float32_matmuls():
            for i in range(STEPS):
                tokens = torch.randint(cfg.vocab_size, (cfg.batch_size, cfg.block_size + 1), generator=batches)
                step.set_lr(lr_at(cfg, i, (i - cfg.warmup_steps) / (STEPS - cfg.warmup_steps)))
                losses.append(step.step(tokens[:, :-1], tokens[:, 1:]).item().hex())
        return {"init": init, "final": params_sha256(step.model), "losses": losses}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PINNED))
def test_the_baseline_trains_bit_identically_to_the_recorded_run(preset: str) -> None:
    cfg = PRESETS[preset].config().replace(batch_size=4, warmup_steps=5, precision="fp32")
    assert pinned_run(cfg) == PINNED[preset]
