"""Micro-benchmarks of every variant (parametrized in conftest.py): a forward pass, a training
step, and one decoding step with and without the KV cache. The baseline against attn-looped
is the seed's own question: batched heads against one module per head.

    minigpt-bench bench --variants baseline,attn-looped --devices cpu
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt.config import Config
from minigpt.measure import synchronize
from minigpt.model import KVCache
from minigpt.precision import Precision
from minigpt.step import TrainStep, compile_model


def test_forward(benchmark, bench_case) -> None:  # noqa: ANN001
    """One training-size batch through the model in inference mode, loss included, under the
    autocast and float32 matmul setting that training uses."""
    cfg, device = bench_case.cfg, bench_case.device

    def prepare() -> tuple[Callable[[], None], int]:
        model = compile_model(bench_case.model.eval(), cfg.compile)  # every round of a case runs before the next case
        precision = Precision.resolve(cfg.precision, device)
        x, y = bench_case.tokens(cfg.batch_size, cfg.block_size), bench_case.tokens(cfg.batch_size, cfg.block_size)

        def forward() -> None:
            with precision.float32_matmuls(), precision.autocast(), torch.inference_mode():
                model(x, y)
            synchronize(device)

        return forward, x.numel()

    bench_case.measure(benchmark, "forward", prepare)


def timed_train_step(cfg: Config, device: torch.device, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """The trainer's own step (TrainStep.step) on one batch, then a device sync."""
    train_step = TrainStep(cfg, device, seed=0)

    def train_step_call() -> None:
        with train_step.precision.float32_matmuls():
            train_step.step(x, y)
        synchronize(device)

    return train_step_call


def test_train_step(benchmark, bench_case) -> None:  # noqa: ANN001
    """Forward, backward, gradient clipping and the optimizer step: TrainStep.step, exactly as
    the trainer and the interleaved speed phase run it."""
    cfg, device = bench_case.cfg, bench_case.device

    def prepare() -> tuple[Callable[[], None], int]:
        x, y = bench_case.tokens(cfg.batch_size, cfg.block_size), bench_case.tokens(cfg.batch_size, cfg.block_size)
        return timed_train_step(cfg, device, x, y), x.numel()

    bench_case.measure(benchmark, "train_step", prepare)


def test_decode_cached(benchmark, bench_case) -> None:  # noqa: ANN001
    """The next token of one sequence at the last position of a full context: the prompt is
    in the KV cache, only the new token goes through the model."""
    model, device, prompt_length = bench_case.model, bench_case.device, bench_case.cfg.block_size - 1

    def prepare() -> tuple[Callable[[], None], int]:
        cache = KVCache(bench_case.cfg)
        next_token = bench_case.tokens(1, 1)
        with torch.inference_mode():
            model.eval()(bench_case.tokens(1, prompt_length), cache=cache)

        def decode_step() -> None:
            with torch.inference_mode():
                model(next_token, cache=cache)
            synchronize(device)
            # Rewinding (not refilling) the cache makes every call decode at the same position
            # while pytest-benchmark chooses rounds and iterations freely; it costs n_layer stores.
            for layer in cache.layers:
                layer.length = prompt_length

        return decode_step, 1

    bench_case.measure(benchmark, "decode_cached", prepare)


def test_decode_uncached(benchmark, bench_case) -> None:  # noqa: ANN001
    """The same next token without a cache: a full forward over the block_size context."""
    model, device = bench_case.model, bench_case.device

    def prepare() -> tuple[Callable[[], None], int]:
        context = bench_case.tokens(1, bench_case.cfg.block_size)
        model.eval()

        def decode_step() -> None:
            with torch.inference_mode():
                model(context)
            synchronize(device)

        return decode_step, 1

    bench_case.measure(benchmark, "decode_uncached", prepare)
