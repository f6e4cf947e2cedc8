"""Decoding speed with and without the KV cache, as the generation issue asks:

    python benchmarks/generation_speed.py            # 500 new tokens, 6x384 model, block 256, CPU

A random-weight model of the asked shape greedily continues a one-character prompt, once with
the cache and once by the plain loop (a full forward over the last block_size tokens per token).
Both must produce the same tokens; the script checks it. Each run is timed token by token, so one
run gives two figures: the first block_size - 1 new tokens (the whole text fits in one block and
the cache serves every step) and all of them. Past block_size the window slides, every cached key
and value goes stale, and both ways pay a full window forward per token, so the ratio over 500
tokens is bounded by that second half. Figures are medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minigpt.config import Config
from minigpt.generate import stream
from minigpt.model import GPT


def token_times(model: GPT, new_tokens: int, use_cache: bool) -> tuple[list[float], list[int]]:
    """Seconds since the start at which each new token was ready, and the tokens."""
    began = time.perf_counter()
    times, tokens = [], []
    for token in stream(model, [0], new_tokens, temperature=0, use_cache=use_cache):
        times.append(time.perf_counter() - began)
        tokens.append(int(token[0]))
    return times, tokens


def rate(times: list[float], first: int, end: int) -> float:
    """Tokens per second over new tokens first..end-1 (0-based)."""
    return (end - first) / (times[end - 1] - (times[first - 1] if first else 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's choice]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = Config(vocab_size=65, n_layer=6, n_head=6, n_embd=384, block_size=256)
    model = GPT(cfg).eval()
    within = min(args.new_tokens, cfg.block_size - 1)  # a 1-token prompt leaves block_size - 1 in the block
    phases = {f"all {args.new_tokens}": (0, args.new_tokens), f"first {within} (one block)": (0, within)}
    if args.new_tokens > within:
        phases[f"tokens {within + 1}-{args.new_tokens} (sliding window)"] = (within, args.new_tokens)
    print(
        f"model: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dim, block {cfg.block_size}, "
        f"{model.num_params():,} parameters; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    token_times(model, 20, True), token_times(model, 20, False)  # warm-up, not counted
    rates: dict[tuple[str, bool], list[float]] = {(phase, cache): [] for phase in phases for cache in (True, False)}
    for repeat in range(args.repeats):
        runs = {cache: token_times(model, args.new_tokens, use_cache=cache) for cache in (True, False)}
        if runs[True][1] != runs[False][1]:
            raise SystemExit("cached and uncached decoding disagree: the cache is wrong")
        for (phase, cache), values in rates.items():
            values.append(rate(runs[cache][0], *phases[phase]))
        line = ", ".join(f"{phase} {rates[phase, True][-1]:.1f} vs {rates[phase, False][-1]:.1f}" for phase in phases)
        print(f"run {repeat + 1} (tok/s, cached vs uncached; outputs identical): {line}")
    for phase in phases:
        cached, uncached = statistics.median(rates[phase, True]), statistics.median(rates[phase, False])
        print(
            f"median over {args.repeats}, {phase}: with cache {cached:.1f} tok/s, without {uncached:.1f} tok/s, "
            f"ratio {cached / uncached:.2f}x"
        )


if __name__ == "__main__":
    main()
