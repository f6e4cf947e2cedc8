"""Interleaved speed: what a variant costs per token, measured so that the machine's drift cancels.

Trials train minutes apart, and a shared machine's speed drifts by tens of percent in that
time, so tokens/s taken while trials trained cannot be compared across trials. Here every
variant of a run gets a trainer at its trial's configuration (its own optimizer, precision
and compile mode) and all of them take training steps in alternating rounds in one process
(A B C C B A ..., one step at a time). A variant's speed is its tokens/s over the baseline's in the same
round; the geometric mean of those paired ratios, with a 95% interval across rounds, gives a
verdict: faster, slower, or no clear difference.

    from minigpt.speed import measure_run_speed
    speed = measure_run_speed("runs/default", rounds=10)   # also writes runs/default/speed.json
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minigpt import atomic
from minigpt.errors import UserError
from minigpt.interleave import measure_rounds
from minigpt.measure import DRIFT_LIMIT, device_absent_reason, drift_fields, probe_speed
from minigpt.stats import paired_ratio
from minigpt.store import RunStore, is_evaluation
from minigpt.trial import now

if TYPE_CHECKING:
    from minigpt.data import Corpus

SPEED_FILE = "speed.json"
DEFAULT_ROUNDS = 10
STEPS_PER_ROUND = 4  # steps each contender takes per round, one at a time in turn
WARMUP_ROUNDS = 2  # rounds that pay for allocation, thread pools, kernels and compilation: not counted
TRAINED = ("completed", "diverged")  # statuses of trials that trained: their variants have a speed to compare


class SpeedError(UserError):
    """A run whose speed cannot be measured as asked."""


class Contender:
    """One variant's TrainStep taking training steps on its own batches."""

    def __init__(self, name: str, config: Any, corpus: Corpus, device: str, seed: int) -> None:
        from minigpt.data import BatchSampler
        from minigpt.step import TrainStep

        corpus.check_block_size(config.block_size)
        cfg = config.replace(vocab_size=corpus.tokenizer.vocab_size)
        self.name = name
        self.train_step = TrainStep(cfg, device, seed)
        self.sampler = BatchSampler(corpus.train, cfg.block_size, cfg.batch_size, seed, self.train_step.device)
        self.tokens_per_step = self.train_step.tokens_per_step

    def seconds_per_step(self, steps: int) -> float:
        """Mean seconds of `steps` training steps, the device synchronized before and after."""
        from minigpt.measure import synchronize

        device = self.train_step.device
        with self.train_step.precision.float32_matmuls():
            synchronize(device)
            began = time.perf_counter()
            for _ in range(steps):
                self.train_step.step(*self.sampler())
            synchronize(device)
        return (time.perf_counter() - began) / steps


def time_rounds(
    contenders: list[Contender],
    rounds: int,
    steps: int = STEPS_PER_ROUND,
    warmup: int = WARMUP_ROUNDS,
    on_round: Callable[[], None] | None = None,
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Each contender's median step in every counted round, and the error of each contender
    whose step raised (it is left out from then on). The contenders take one step each in turn,
    interleaved (minigpt.interleave: A B C C B A ...), so a machine that speeds up or slows down
    during a round weighs on all of them alike; the median keeps a stalled step from deciding
    the round."""
    measures = {c.name: (lambda c=c: c.seconds_per_step(1)) for c in contenders}
    timings = measure_rounds(measures, rounds, steps, warmup, on_round)
    medians = {name: [statistics.median(turns) for turns in taken] for name, taken in timings.seconds.items()}
    return medians, timings.failed


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
    corpus: Corpus,
    device: str,
    seed: int,
    rounds: int,
    on_round: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The speed of every variant (name -> configuration) on one device, drift probed around it."""
    import torch

    from minigpt.measure import device_absent_reason, device_name
    from minigpt.precision import resolve_precision

    absent = device_absent_reason(device)
    if absent:
        return {"skipped": absent}
    if any(config.compile != "false" for config in configs.values()):
        allow_recompiles(2 * len(configs))
    contenders, errors = [], {}
    for name, config in configs.items():
        try:
            contenders.append(Contender(name, config, corpus, device, seed))
        except Exception as error:  # a variant that cannot be built has no speed; the others still do
            errors[name] = {"error": f"{type(error).__name__}: {error}"}
    if baseline not in {c.name for c in contenders}:
        error = errors.get(baseline, {}).get("error")
        return {"skipped": f"the baseline {baseline!r} could not be built: {error}", "failed": True}
    precision = resolve_precision(configs[baseline].precision, torch.device(device))
    before, size = probe_speed(device, precision)
    seconds, failed = time_rounds(contenders, rounds, on_round=on_round)
    drift = drift_fields(before, probe_speed(device, precision, size)[0])
    if baseline in failed:
        return {"skipped": f"the baseline {baseline!r} failed to step: {failed[baseline]}", "failed": True}
    errors.update({name: {"error": error} for name, error in failed.items()})
    return {
        "device_name": device_name(torch.device(device)),
        "baseline": baseline,
        "drift": {**drift["drift"], "flagged": drift["drift_flagged"]},
        "variants": {**compare([c for c in contenders if c.name in seconds], seconds, baseline), **errors},
    }


def failed_measurements(speed: dict[str, Any]) -> list[str]:
    """'DEVICE' or 'VARIANT on DEVICE' for each measurement of speed.json that failed (not the
    devices skipped for being absent or having nothing to compare)."""
    failed = []
    for device, measured in speed["devices"].items():
        if measured.get("failed"):
            failed.append(device)
        failed += [f"{name} on {device}" for name, row in measured.get("variants", {}).items() if "error" in row]
    return failed


def allow_recompiles(count: int) -> None:
    """The contenders are compiled models of one class: each is a recompilation of the same
    forward, and past torch's limit the rest would silently run uncompiled."""
    import torch._dynamo

    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit, max(getattr(config, limit), count))


def run_contenders(store: RunStore) -> tuple[dict[str, dict[str, Any]], list[str], str]:
    """From a run's trials: the configuration of each variant, the devices, the baseline."""
    from minigpt.config import Config
    from minigpt.variants import BASELINE

    sweep = store.read_sweep()
    records = [r for r in store.trials() if r.get("config") and is_evaluation(r)]
    if not sweep or not records:
        raise SpeedError(f"{store.root} holds no trials to time; run `minigpt-bench run --out {store.root}` first")
    variants = [v for v in sweep.get("variants", []) if any(r["variant"] == v for r in records)]
    configs = {v: Config.from_dict(next(r["config"] for r in records if r["variant"] == v)) for v in variants}
    baseline = BASELINE if BASELINE in configs else variants[0]
    return configs, sweep.get("devices", ["cpu"]), baseline


def untimed_devices(store: RunStore, devices: list[str]) -> dict[str, str]:
    """Why each device that has nothing to compare is not timed: fewer than two variants trained
    there (timing one variant against itself says nothing), or the device is absent."""
    records = store.trials()
    reasons = {}
    for device in devices:
        trained = sorted({r["variant"] for r in records if r["device"] == device and r["status"] in TRAINED})
        absent = device_absent_reason(device)
        if absent:
            reasons[device] = absent
        elif len(trained) < 2:
            who = f"only {trained[0]}" if trained else "no variant"
            reasons[device] = f"{who} trained on {device}, so there is nothing to compare"
    return reasons


def check_rounds(rounds: int, option: str = "--rounds") -> None:
    if rounds < 2:
        raise SpeedError(f"{option} must be at least 2 (an interval needs two rounds), got {rounds}")


def measure_run_speed(
    run_dir: str | Path,
    rounds: int = DEFAULT_ROUNDS,
    on_round: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Time the variants of a finished run in interleaved rounds on each of its devices and
    write RUN_DIR/speed.json; returns what it wrote."""
    check_rounds(rounds)
    from minigpt.data import load_corpus
    from minigpt.variants import discover, recorded_plugins

    store = RunStore(run_dir)
    started = now()
    configs, devices, baseline = run_contenders(store)
    untimed = untimed_devices(store, devices)
    measured = {device: {"skipped": reason} for device, reason in untimed.items()}
    timed = [device for device in devices if device not in untimed]
    if timed:
        sweep = store.read_sweep()
        discover(recorded_plugins(store.root))  # a plugin's components must be registered before its models are built
        corpus = load_corpus(sweep["data"], sweep.get("max_vocab"))
        seed = sweep.get("seeds", [0])[0]
        for device in timed:
            measured[device] = measure_device(configs, baseline, corpus, device, seed, rounds, on_round)
    speed = {
        "rounds": rounds,
        "steps_per_round": STEPS_PER_ROUND,
        "warmup_rounds": WARMUP_ROUNDS,
        "drift_limit": DRIFT_LIMIT,
        "measured_at": started,
        "devices": {device: measured[device] for device in devices},
    }
    atomic.write_json(store.root / SPEED_FILE, speed)
    return speed
