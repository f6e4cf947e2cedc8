"""Interleaved speed: what a variant costs per token, measured so that the machine's drift cancels.

Trials train minutes apart, and a shared machine's speed drifts by tens of percent in that
time, so tokens/s taken while trials trained cannot be compared across trials. Here every
variant of a run gets a trainer at its trial's configuration (its own optimizer, precision
and compile mode) and all of them take training steps in alternating rounds in one process
(A B C, then C B A, ...). A variant's speed is its tokens/s over the baseline's in the same
round; the geometric mean of those paired ratios, with a 95% interval across rounds, gives a
verdict: faster, slower, or no clear difference.

    from minigpt.speed import measure_run_speed
    speed = measure_run_speed("runs/default", rounds=10)   # also writes runs/default/speed.json
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minigpt import atomic
from minigpt.errors import UserError
from minigpt.stats import t_quantile_975
from minigpt.store import RunStore
from minigpt.trial import DRIFT_LIMIT, now

SPEED_FILE = "speed.json"
DEFAULT_ROUNDS = 10
STEPS_PER_ROUND = 3
WARMUP_ROUNDS = 2  # rounds that pay for allocation, thread pools, kernels and compilation: not counted
TIE = 0.02  # ratios within 2% of 1.0 are no clear difference, whatever the interval says


class SpeedError(UserError):
    """A run whose speed cannot be measured as asked."""


@dataclass(frozen=True)
class PairedRatio:
    ratio: float
    low: float
    high: float
    verdict: str


def paired_ratio(ratios: Sequence[float]) -> PairedRatio:
    """Geometric mean of per-round ratios (> 1: faster than the baseline) with a Student's t
    95% interval on their logarithms, and the verdict it supports."""
    logs = [math.log(r) for r in ratios]
    centre = statistics.fmean(logs)
    half = t_quantile_975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
    ratio, low, high = math.exp(centre), math.exp(centre - half), math.exp(centre + half)
    return PairedRatio(ratio, low, high, speed_verdict(ratio, low, high) if len(logs) > 1 else "no clear difference")


def speed_verdict(ratio: float, low: float, high: float) -> str:
    if low > 1 and ratio > 1 + TIE:
        return "faster"
    if high < 1 and ratio < 1 - TIE:
        return "slower"
    return "no clear difference"


class Contender:
    """One variant's trainer taking training steps on its own batches."""

    def __init__(self, name: str, config: Any, corpus: Any, device: str, seed: int) -> None:
        from minigpt.data import BatchSampler
        from minigpt.train import Budget, Trainer

        self.name = name
        self.trainer = Trainer(config, corpus, device, seed, Budget(max_steps=1))
        cfg = self.trainer.cfg
        self.sampler = BatchSampler(corpus.train, cfg.block_size, cfg.batch_size, seed, self.trainer.device)
        self.tokens_per_step = self.trainer.tokens_per_step

    def seconds_per_step(self, steps: int) -> float:
        """Mean seconds of `steps` training steps, the device synchronized before and after."""
        from minigpt.measure import synchronize
        from minigpt.precision import float32_matmuls

        device = self.trainer.device
        with float32_matmuls(self.trainer.precision, device):
            synchronize(device)
            began = time.perf_counter()
            for _ in range(steps):
                self.trainer.train_step(self.sampler)
            synchronize(device)
        return (time.perf_counter() - began) / steps


def time_rounds(
    contenders: list[Contender],
    rounds: int,
    steps: int = STEPS_PER_ROUND,
    warmup: int = WARMUP_ROUNDS,
    on_round: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per step of every contender in each counted round, the order reversed every
    round so that no contender always runs first or right after another."""
    seconds: dict[str, list[float]] = {c.name: [] for c in contenders}
    for index in range(warmup + rounds):
        order = contenders if index % 2 == 0 else contenders[::-1]
        for contender in order:
            taken = contender.seconds_per_step(steps)
            if index >= warmup:
                seconds[contender.name].append(taken)
        if on_round is not None:
            on_round()
    return seconds


def compare(contenders: list[Contender], seconds: dict[str, list[float]], baseline: str) -> dict[str, Any]:
    """Each contender's median step, tokens/s and paired speed ratio to the baseline."""
    tokens = {c.name: c.tokens_per_step for c in contenders}
    base = [tokens[baseline] / s for s in seconds[baseline]]
    results = {}
    for name, taken in seconds.items():
        median = statistics.median(taken)
        ratios = [tokens[name] / s / b for s, b in zip(taken, base, strict=True)]
        paired = paired_ratio(ratios)
        results[name] = {
            "step_ms_median": median * 1000,
            "tokens_per_sec": tokens[name] / median,
            "speed_ratio": paired.ratio,
            "speed_ratio_low": paired.low,
            "speed_ratio_high": paired.high,
            "speed_verdict": "baseline" if name == baseline else paired.verdict,
            "ratios": ratios,
        }
    return results


def measure_device(
    configs: dict[str, Any],
    baseline: str,
    corpus: Any,
    device: str,
    seed: int,
    rounds: int,
    on_round: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The speed of every variant (name -> configuration) on one device, drift probed around it."""
    import torch

    from minigpt.measure import device_absent_reason, device_name
    from minigpt.precision import resolve_precision
    from minigpt.trial import drift_fields, probe_speed

    absent = device_absent_reason(device)
    if absent:
        return {"skipped": absent}
    contenders, errors = [], {}
    for name, config in configs.items():
        try:
            contenders.append(Contender(name, config, corpus, device, seed))
        except Exception as error:  # a variant that cannot be built has no speed; the others still do
            errors[name] = {"error": f"{type(error).__name__}: {error}"}
    if baseline not in {c.name for c in contenders}:
        return {"skipped": f"the baseline {baseline!r} could not be built: {errors.get(baseline, {}).get('error')}"}
    precision = resolve_precision(configs[baseline].precision, torch.device(device))
    before = probe_speed(device, precision)
    seconds = time_rounds(contenders, rounds, on_round=on_round)
    drift = drift_fields(before, probe_speed(device, precision))
    return {
        "device_name": device_name(torch.device(device)),
        "baseline": baseline,
        "drift": {**drift["drift"], "flagged": drift["drift_flagged"]},
        "variants": {**compare(contenders, seconds, baseline), **errors},
    }


def run_contenders(store: RunStore) -> tuple[dict[str, dict[str, Any]], list[str], str]:
    """From a run's trials: the configuration of each variant, the devices, the baseline."""
    from minigpt.config import Config
    from minigpt.variants import BASELINE

    sweep = store.read_sweep()
    records = [r for r in store.trials() if r.get("config")]
    if not sweep or not records:
        raise SpeedError(f"{store.root} holds no trials to time; run `minigpt-bench run --out {store.root}` first")
    variants = [v for v in sweep.get("variants", []) if any(r["variant"] == v for r in records)]
    configs = {v: Config.from_dict(next(r["config"] for r in records if r["variant"] == v)) for v in variants}
    baseline = BASELINE if BASELINE in configs else variants[0]
    return configs, sweep.get("devices", ["cpu"]), baseline


def measure_run_speed(
    run_dir: str | Path,
    rounds: int = DEFAULT_ROUNDS,
    on_round: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Time the variants of a finished run in interleaved rounds on each of its devices and
    write RUN_DIR/speed.json; returns what it wrote."""
    if rounds < 2:
        raise SpeedError(f"--speed-rounds must be at least 2 (an interval needs two rounds), got {rounds}")
    from minigpt.data import load_corpus
    from minigpt.variants import discover

    store = RunStore(run_dir)
    configs, devices, baseline = run_contenders(store)
    sweep = store.read_sweep()
    discover(sweep.get("plugins", []))  # a plugin's components must be registered before its models are built
    corpus = load_corpus(sweep["data"], sweep.get("max_vocab"))
    seed = sweep.get("seeds", [0])[0]
    speed = {
        "rounds": rounds,
        "steps_per_round": STEPS_PER_ROUND,
        "warmup_rounds": WARMUP_ROUNDS,
        "drift_limit": DRIFT_LIMIT,
        "measured_at": now(),
        "concurrent": False,
        "devices": {
            device: measure_device(configs, baseline, corpus, device, seed, rounds, on_round) for device in devices
        },
    }
    atomic.write_json(store.root / SPEED_FILE, speed)
    return speed


def read_speed(run_dir: str | Path) -> dict[str, Any] | None:
    from minigpt.store import read_json

    return read_json(Path(run_dir) / SPEED_FILE)
