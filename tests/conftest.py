"""Shared fixtures: tiny configurations and corpora, so the suite runs in minutes on 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from minigpt import cli as minigpt_cli
from minigpt.config import PRESETS, Config
from minigpt.runner import QuietObserver

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT / "data" / "input.txt"
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4}
# `run` trains three seeds by default; most tests need one.
ONE_SEED = ["--seeds", "0"]
TINY_SET = ["--set", "n_layer=1", "--set", "n_embd=16", "--set", "n_head=2", "--set", "block_size=16",
            "--set", "batch_size=4", "--set", "eval_interval=5", "--set", "eval_batches=2", "--set", "warmup_steps=2"]  # fmt: skip


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the user's corpus cache."""
    monkeypatch.setenv("MINIGPT_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def scratch_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a test registers with a component registry (a plugin's attention, a broken MLP) is
    gone after it, so no later test meets it among the registry's names."""
    from minigpt import components

    for registry in components.CHOSEN_BY_CONFIG:
        monkeypatch.setattr(registry, "_factories", dict(registry._factories))


@pytest.fixture
def tiny_config() -> Config:
    return Config(**TINY, warmup_steps=5, eval_interval=10, eval_batches=2)


# Models for decoding and component tests: a context of 8 over 9 characters (a newline for the
# default prompt), so that a few dozen greedy tokens run well past block_size.
BLOCK = 8
VOCAB = "\nabcdefgh"


def tiny_recipe() -> Config:
    """The cpu-fast recipe (its optimizer, learning rate and schedule) at a tiny size: two layers
    of 16 dims over VOCAB, a context of BLOCK."""
    tiny = {"vocab_size": len(VOCAB), "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": BLOCK}
    return PRESETS["cpu-fast"].config().replace(**tiny, batch_size=4, warmup_steps=5)


def random_model(cfg: Config, seed: int = 0) -> Any:
    """A GPT of `cfg` in eval mode, built under `seed` with every weight then drawn from
    N(0, 0.5): its logits lie far enough apart that a greedy choice never hangs on rounding."""
    import torch

    from minigpt.model import GPT

    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def train_on_a_cycle(cfg: Config, steps: int = 30, seed: int = 0) -> Any:
    """The losses of `steps` TrainSteps of `cfg` on shifted copies of one cycle through the
    vocabulary (learnable in a few steps), the learning rate following cfg.schedule."""
    import torch

    from minigpt import components
    from minigpt.step import TrainStep

    step = TrainStep(cfg, "cpu", seed=seed)
    schedule = components.schedule.get(cfg.schedule)
    batches = torch.Generator().manual_seed(seed)
    text = torch.arange(cfg.block_size + 1) % cfg.vocab_size
    losses = []
    with step.precision.float32_matmuls():
        for i in range(steps):
            offsets = torch.randint(cfg.vocab_size, (cfg.batch_size, 1), generator=batches)
            tokens = (text + offsets) % cfg.vocab_size
            step.set_lr(schedule(cfg, i, (i - cfg.warmup_steps) / (steps - cfg.warmup_steps)))
            losses.append(step.step(tokens[:, :-1], tokens[:, 1:]))
    assert all(torch.isfinite(p).all() for p in step.model.parameters())
    return torch.stack(losses)


def plain_loop(model: Any, prompt: list[int], steps: int) -> list[int]:
    """The reference for cached decoding: greedy tokens from the last block_size tokens, no cache."""
    import torch

    idx = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(steps):
            logits = model(idx[:, -model.cfg.block_size :])[0][:, -1]
            idx = torch.cat((idx, logits.argmax(-1, keepdim=True)), dim=1)
    return idx[0].tolist()


def subprocess_env() -> dict[str, str]:
    """One thread per process: the tests' tiny models gain nothing from more, and on a busy
    machine spinning thread pools make them many times slower."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`minigpt-bench ARGS` in a fresh interpreter, as a user runs it."""
    env = subprocess_env()
    return subprocess.run(
        [sys.executable, "-m", "minigpt.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`minigpt-bench ARGS` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["minigpt-bench", *args])
    with pytest.raises(SystemExit) as exit_:
        minigpt_cli.main()
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


class Counting(QuietObserver):
    """The first line's counts, and the trials the display was told of later."""

    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []
        self.added = 0

    def sweep_started(self, total: int, pending: int, notes: Sequence[str] = ()) -> None:
        self.started.append((total, pending))

    def trials_added(self, count: int) -> None:
        self.added += count
