"""Micro-benchmarks of every variant (parametrized in conftest.py): a forward pass, a training
step, and one decoding step with and without the KV cache. The baseline against attn-looped
is the seed's own question: batched heads against one module per head.

    minigpt-bench bench --variants baseline,attn-looped --devices cpu
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt import components
from minigpt.measure import synchronize
from minigpt.model import KVCache
from minigpt.train import compile_model


def test_forward(benchmark, bench_case) -> None:  # noqa: ANN001
    """One training-size batch through the model in inference mode, loss included."""
    cfg, device = bench_case.cfg, bench_case.device

    def prepare() -> tuple[Callable[[], None], int]:
        model = compile_model(bench_case.model.eval(), cfg.compile)  # every round of a case runs before the next case
        x, y = bench_case.tokens(cfg.batch_size, cfg.block_size), bench_case.tokens(cfg.batch_size, cfg.block_size)

        def forward() -> None:
            with torch.inference_mode():
                model(x, y)
            synchronize(device)

        return forward, x.numel()

    bench_case.measure(benchmark, "forward", prepare)


def test_train_step(benchmark, bench_case) -> None:  # noqa: ANN001
    """Forward, backward, gradient clipping and the optimizer step, as the trainer runs them."""
    cfg, device = bench_case.cfg, bench_case.device

    def prepare() -> tuple[Callable[[], None], int]:
        model = bench_case.model.train()
        step_model = compile_model(model, cfg.compile)
        optimizer = components.optimizer.build(cfg.optimizer, model, cfg, device)
        x, y = bench_case.tokens(cfg.batch_size, cfg.block_size), bench_case.tokens(cfg.batch_size, cfg.block_size)

        def train_step() -> None:
            _, loss = step_model(x, y)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            synchronize(device)

        return train_step, x.numel()

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
