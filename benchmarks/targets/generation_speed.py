"""Decoding speed with and without the KV cache, as the generation issue asks:

    python benchmarks/targets/generation_speed.py                  # 500 new tokens, 6x384 model, block 256, CPU
    python benchmarks/targets/generation_speed.py --baseline REV   # and against the cached loop at REV

A random-weight model of the asked shape greedily continues a one-character prompt, once with
the cache and once by the plain loop (a full forward over the last block_size tokens per token).
Both must produce the same tokens; the script checks it. Each run is timed token by token, so one
run gives two figures: the first block_size - 1 new tokens (the whole text fits in one block and
the cache serves every step) and all of them. Past block_size the window slides, every cached key
and value goes stale, and both ways pay a full window forward per token, so the ratio over 500
tokens is bounded by that second half. Figures are medians over --repeats runs.

With --baseline REV (any revision git knows; reports/cpu-targets used 1b9df86, before the
decoding speed-ups) the cached loop of minigpt/generate.py as it was at that commit also runs,
on the same model, alternating with today's in every repeat (the order flips from repeat to
repeat); the speed-up is the median of the per-repeat ratios. It needs git and this
repository's history; without --baseline nothing is compared.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

from minigpt.config import Config
from minigpt.generate import matvec_linears, stream
from minigpt.interleave import rounds
from minigpt.model import GPT


def token_times(
    model: GPT, new_tokens: int, use_cache: bool, streamer: Callable = stream
) -> tuple[list[float], list[int]]:
    """Seconds since the start at which each new token was ready, and the tokens."""
    began = time.perf_counter()
    times, tokens = [], []
    for token in streamer(model, [0], new_tokens, temperature=0, use_cache=use_cache):
        times.append(time.perf_counter() - began)
        tokens.append(int(token[0]))
    return times, tokens


def rate(times: list[float], first: int, end: int) -> float:
    """Tokens per second over new tokens first..end-1 (0-based)."""
    return (end - first) / (times[end - 1] - (times[first - 1] if first else 0.0))


def weight_reads_ms(model: GPT, tokens: int) -> float:
    """Milliseconds per token of the model's matrix-vector products alone (every Linear applied
    to one row the way one cached decoding step applies it): the floor the weights' memory
    traffic sets."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    rows = {m.in_features: torch.randn(1, m.in_features) for m in layers}
    with torch.inference_mode(), matvec_linears(model):
        began = time.perf_counter()
        for _ in range(tokens):
            for m in layers:
                m(rows[m.in_features])
        return (time.perf_counter() - began) / tokens * 1e3


def baseline_stream(revision: str) -> Callable:
    """`stream` from minigpt/generate.py at `revision`, run against today's model code."""
    root = Path(__file__).resolve().parents[2]
    source = subprocess.run(
        ["git", "show", f"{revision}:minigpt/generate.py"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(f"generate_at_{revision}")
    exec(compile(source, f"{revision}:minigpt/generate.py", "exec"), module.__dict__)
    return module.stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's choice]")
    parser.add_argument(
        "--baseline", default=None, metavar="REV", help="git revision whose cached loop to compare with [default: none]"
    )
    args = parser.parse_args()
    old_stream = baseline_stream(args.baseline) if args.baseline else None
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
    speedups: list[float] = []
    floors: list[float] = []
    # the baseline runs right after or right before today's cached loop, alternately
    for repeat, order in rounds(["new", "old"] if old_stream is not None else ["new"], args.repeats):
        for which in order:
            if which == "new":
                cached = token_times(model, args.new_tokens, use_cache=True)
            else:
                old = token_times(model, within, True, old_stream)
        floors.append(weight_reads_ms(model, within))
        runs = {True: cached, False: token_times(model, args.new_tokens, use_cache=False)}
        if runs[True][1] != runs[False][1]:
            raise SystemExit("cached and uncached decoding disagree: the cache is wrong")
        if old_stream is not None and old[1] != cached[1][:within]:
            raise SystemExit(f"today's cached decoding disagrees with the one at {args.baseline}")
        if old_stream is not None:
            speedups.append(rate(runs[True][0], 0, within) / rate(old[0], 0, within))
            print(f"run {repeat + 1}: cached, first {within}: {speedups[-1]:.2f}x the cached loop at {args.baseline}")
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
    cached_ms = 1e3 / statistics.median(rates[f"first {within} (one block)", True])
    print(
        f"median over {args.repeats}: cached decoding {cached_ms:.2f} ms/token, of which the matrix-vector "
        f"products alone take {statistics.median(floors):.2f} ms"
    )
    if speedups:
        print(
            f"median over {args.repeats}, cached, first {within}: {statistics.median(speedups):.2f}x the cached loop "
            f"at {args.baseline} (range {min(speedups):.2f}-{max(speedups):.2f})"
        )


if __name__ == "__main__":
    main()
