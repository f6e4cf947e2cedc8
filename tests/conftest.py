"""Shared fixtures: tiny configurations and corpora, so the suite runs in minutes on 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt import cli as minigpt_cli
from minigpt.config import Config

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
def tiny_config() -> Config:
    return Config(**TINY, warmup_steps=5, eval_interval=10, eval_batches=2)


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
