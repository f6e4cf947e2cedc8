"""Measuring honestly: device-synchronized step timers, peak memory, FLOPs per token, a matmul
probe for the device's peak (the MFU denominator), and device names."""

from __future__ import annotations

import math
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minigpt.precision import dtype_of, float32_matmuls

DRIFT_LIMIT = 0.10  # a trial during which the machine's matmul speed moved more than this is flagged
DRIFT_PROBE_SECONDS = 0.2  # at most: a probe ends sooner once its best product has settled
DRIFT_PROBE_SETTLED = 16  # products in a row none of which beats the best by DRIFT_PROBE_GAIN: settled
DRIFT_PROBE_GAIN = 0.01  # the probe is read to about 1%; smaller gains do not restart the count
DRIFT_PROBE_SAMPLE_SECONDS = 0.002  # products timed per sync: enough for a sample of about this long
DRIFT_PROBE_SIZE_CPU = 512  # small enough for a few products in the time box even where bf16 is slow
DRIFT_PROBE_SIZE_GPU = 4096


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timing_event(device: torch.device):  # noqa: ANN202
    if device.type == "cuda":
        return torch.cuda.Event(enable_timing=True)
    return torch.mps.event.Event(enable_timing=True)


class StepTimer:
    """Durations of training steps. On cpu a step has finished when its Python call returns;
    on cuda/mps events recorded in the stream time the device's work without a host sync per
    step, and are read (one sync) only when `durations` is asked for."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.accelerated = device.type in ("cuda", "mps")
        self._seconds: list[float] = []
        self._pending: list[tuple] = []
        self._started: float | object = 0.0

    def start(self) -> None:
        if self.accelerated:
            self._started = _timing_event(self.device)
            self._started.record()
        else:
            self._started = time.perf_counter()

    def stop(self) -> None:
        if self.accelerated:
            end = _timing_event(self.device)
            end.record()
            self._pending.append((self._started, end))
        else:
            self._seconds.append(time.perf_counter() - self._started)

    def durations(self) -> list[float]:
        if self._pending:
            synchronize(self.device)
            self._seconds += [begin.elapsed_time(end) / 1000 for begin, end in self._pending]
            self._pending.clear()
        return self._seconds


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """cuda: the allocator's peak since the last reset. mps: memory the driver holds now.
    cpu: the process's resident high-water mark (covers everything the process did so far)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def flops_per_token(model: nn.Module) -> int:
    """Training FLOPs per token (forward + backward = 3x forward), as in the PaLM paper:
    6 N for the N weights used in matrix products (embedding lookups excluded, the LM head
    included; norm gains, qk-norm's included, and biases are elementwise, not matmul weights)
    plus, per layer, 12 * n_embd * keys for the attention scores and their weighted sum (q k^T
    and att v over all n_head query heads, however many key/value heads they share).

    `keys` is how many keys a query attends to once the context is full: block_size for a
    full layer (PaLM's count: the kernels compute the whole T x T square, the causal half
    masked rather than skipped) and the window for a windowed layer (nanochat's rule). So a
    windowed layer is charged window/block_size of a full layer's attention FLOPs.

    These are model FLOPs, what MFU divides; minigpt.flops counts the total a step computes
    (the whole attention square, normalizations, the optimizer), which --max-flops budgets."""
    cfg = model.cfg
    lookups = {id(model.wte.weight)} - {id(model.lm_head.weight)}
    lookups |= {id(p) for name, p in model.position.named_parameters()}
    matmul_params = sum(p.numel() for p in model.parameters() if p.dim() >= 2 and id(p) not in lookups)
    keys = sum(cfg.layer_window(layer) or cfg.block_size for layer in range(cfg.n_layer))
    return 6 * matmul_params + 12 * cfg.n_embd * keys


def matmul_peak_flops(
    device: torch.device, precision: str = "fp32", size: int | None = None, seconds: float = 0.5
) -> float:
    """FLOP/s of the best square matmul this device ran in about `seconds`, in the dtype of
    `precision` (a resolved one: fp32, tf32, bf16 or fp16): the practical peak that MFU
    divides by. Unless `size` is given, the matrix doubles from 128 (up to 1024 on cpu, 8192
    on accelerators) while the next size fits the time left, so a dtype this device runs
    slowly (bf16 on many CPUs is 100x slower than fp32) is measured on a smaller matrix
    instead of overrunning."""
    dtype = dtype_of(precision)
    cap = size or (8192 if device.type in ("cuda", "mps") else 1024)
    n = size or 128
    with float32_matmuls(precision, device):
        a, b = _square_pair(n, device, dtype)
        _time_matmuls(a, b, 1, device)  # warm-up: thread pools, library handles, clocks
        deadline = time.perf_counter() + seconds
        took = _time_matmuls(a, b, 1, device)
        # 8x the work per doubling; a third of the time left keeps room to sample the last size
        while n < cap and 8 * took <= (deadline - time.perf_counter()) / 3:
            n *= 2
            a, b = _square_pair(n, device, dtype)
            took = _time_matmuls(a, b, 1, device)
        # accelerators finish a product in microseconds: time several per sync
        repeats = max(1, min(64, int(seconds / 20 / took)))
        best = took
        while time.perf_counter() < deadline:
            best = min(best, _time_matmuls(a, b, repeats, device))
    del a, b
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the probe's blocks would otherwise stay reserved through the trial
    return 2 * n**3 / best


def _square_pair(n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)


def _time_matmuls(a: torch.Tensor, b: torch.Tensor, repeats: int, device: torch.device) -> float:
    """Seconds per product, over `repeats` products between two syncs."""
    synchronize(device)
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return (time.perf_counter() - began) / repeats


def probe_speed(device: str, precision: str, size: int | None = None) -> tuple[float, int]:
    """This machine's matmul speed right now in the trial's precision, and the matrix size it
    used: probed before and after a trial at one size, the two tell whether the machine itself
    changed speed meanwhile.

    It times products one sample at a time and stops once DRIFT_PROBE_SETTLED samples in a row
    fail to beat the best by DRIFT_PROBE_GAIN, or at DRIFT_PROBE_SECONDS. A fresh process's first
    products run slower (threads, caches, clocks still starting), which would read as the machine
    speeding up during the trial; the settling rule waits that out, and on an idle machine it
    settles in a few dozen products (tens of milliseconds on a CPU) instead of a fixed time box."""
    size = size or (DRIFT_PROBE_SIZE_CPU if device == "cpu" else DRIFT_PROBE_SIZE_GPU)
    target = torch.device(device)
    with float32_matmuls(precision, target):
        a, b = _square_pair(size, target, dtype_of(precision))
        deadline = time.perf_counter() + DRIFT_PROBE_SECONDS
        took = _time_matmuls(a, b, 1, target)  # also the warm-up: it never counts as the best
        repeats = max(1, min(64, int(DRIFT_PROBE_SAMPLE_SECONDS / took)))
        best, unbeaten = math.inf, 0
        while unbeaten < DRIFT_PROBE_SETTLED and time.perf_counter() < deadline:
            took = _time_matmuls(a, b, repeats, target)
            unbeaten = 0 if took < best * (1 - DRIFT_PROBE_GAIN) else unbeaten + 1
            best = min(best, took)
    del a, b
    if target.type == "cuda":
        torch.cuda.empty_cache()
    return 2 * size**3 / (best if math.isfinite(best) else took), size


def drift_fields(before: float, after: float) -> dict[str, Any]:
    change = after / before - 1
    return {
        "drift": {"before": before, "after": after, "change": change},
        "drift_flagged": abs(change) > DRIFT_LIMIT,
    }


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" if torch.cuda.device_count() > 1 else "cuda" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def device_absent_reason(name: str) -> str | None:
    """Why the device `name` cannot be used here, or None when it can."""
    kind, _, index = name.partition(":")
    if kind == "cpu":
        return None
    if kind == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device on this machine (or torch was built without CUDA)"
        if index and int(index) >= torch.cuda.device_count():
            return f"cuda:{index} absent: this machine has {torch.cuda.device_count()} CUDA device(s)"
        return None
    if kind == "mps":
        return None if torch.backends.mps.is_available() else "no Apple MPS device on this machine"
    return f"unknown device kind {kind!r}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return cpu_model()


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
