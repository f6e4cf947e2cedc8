"""Measurements that a factor of two would silently spoil: FLOPs per token against a hand
count, the step timer on a fake clock, percentiles on known numbers, and the matmul probe's
arithmetic, dtype and time box (on a fake clock)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from minigpt import allocator, measure
from minigpt.components.mlps import swiglu_hidden_size
from minigpt.config import Config
from minigpt.measure import StepTimer, flops_per_token, matmul_peak_flops, percentile
from minigpt.model import GPT

from .conftest import SHAKESPEARE, subprocess_env

V, L, C, T = 65, 3, 48, 32


def hand_count(mlp_weights_per_layer: int) -> int:
    """Per layer q, k, v and the output projection (4 C^2) plus the MLP's matrices; the LM head
    (V C); 6 FLOPs per weight per token (2 forward, 4 backward). Attention adds, per layer,
    q k^T and att v over T keys: 2 * 2 T C forward, times 3 with the backward."""
    weights = L * (4 * C * C + mlp_weights_per_layer) + V * C
    return 6 * weights + 3 * L * 4 * T * C


@pytest.mark.parametrize("tie_weights", [True, False])
def test_flops_per_token_matches_a_hand_count_with_a_tied_or_untied_head(tie_weights: bool) -> None:
    cfg = Config(vocab_size=V, n_layer=L, n_head=4, n_embd=C, block_size=T, tie_weights=tie_weights)
    # the embedding is a lookup, free of FLOPs, whether or not it shares the head's matrix
    assert flops_per_token(GPT(cfg)) == hand_count(8 * C * C)
    learned = GPT(cfg.replace(position="learned", bias=True))  # a position table and biases: no matmuls either
    assert flops_per_token(learned) == hand_count(8 * C * C)


def test_flops_per_token_counts_swiglus_three_matrices() -> None:
    cfg = Config(vocab_size=V, n_layer=L, n_head=4, n_embd=40, block_size=T, mlp="swiglu")
    hidden = swiglu_hidden_size(40)
    assert hidden == 104  # 8 * 40 / 3 rounded to a multiple of 8: not exactly the 8 C^2 of a GELU MLP
    weights = L * (4 * 40 * 40 + 3 * 40 * hidden) + V * 40
    assert flops_per_token(GPT(cfg)) == 6 * weights + 12 * L * T * 40


def fake_clock(monkeypatch: pytest.MonkeyPatch, readings: list[float]) -> None:
    ticks = iter(readings)
    monkeypatch.setattr(measure, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))


def test_step_timer_records_the_time_between_start_and_stop_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_clock(monkeypatch, [10.0, 10.25, 11.0, 11.5, 20.0, 20.125])
    timer = StepTimer(torch.device("cpu"))
    for _ in range(3):  # the gaps between steps (11.0 - 10.25, ...) belong to no step
        timer.start()
        timer.stop()
    assert timer.durations() == [0.25, 0.5, 0.125]


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert percentile(list(range(1, 11)), 90) == pytest.approx(9.1)
    assert percentile([7.0, 1.0], 0) == 1.0 and percentile([7.0, 1.0], 100) == 7.0
    assert percentile([5.0], 90) == 5.0
    assert percentile([], 50) is None


def test_the_probe_reports_two_n_cubed_over_the_best_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device doing 1e11 multiply-adds per second: n^3 / 1e11 s per product, 2e11 FLOP/s."""
    sizes: list[int] = []

    def timed(a: torch.Tensor, b: torch.Tensor, repeats: int, device: torch.device) -> float:
        sizes.append(a.size(0))
        return a.size(0) ** 3 / 1e11

    monkeypatch.setattr(measure, "_time_matmuls", timed)
    assert matmul_peak_flops(torch.device("cpu"), seconds=0.2) == pytest.approx(2e11)
    assert max(sizes) == 1024  # grown to the cpu cap: every size fits the time box
    sizes.clear()
    assert matmul_peak_flops(torch.device("cpu"), size=256, seconds=0.01) == pytest.approx(2e11)
    assert set(sizes) == {256}


def test_the_probe_computes_in_the_precisions_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    dtypes = []
    square_pair = measure._square_pair

    def recording(n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        dtypes.append(dtype)
        return square_pair(n, device, dtype)

    monkeypatch.setattr(measure, "_square_pair", recording)
    for precision, dtype in (("fp32", torch.float32), ("tf32", torch.float32), ("bf16", torch.bfloat16)):
        dtypes.clear()
        assert matmul_peak_flops(torch.device("cpu"), precision, size=64, seconds=0.01) > 0
        assert set(dtypes) == {dtype}


@pytest.mark.parametrize("multiply_adds_per_second", [1e11, 1e9])  # fp32, and bf16 on a CPU without bf16 kernels
def test_the_probe_ends_in_about_its_seconds_even_in_a_slow_dtype(
    monkeypatch: pytest.MonkeyPatch, multiply_adds_per_second: float
) -> None:
    """On a fake clock that each product advances by n^3 / speed: a slow dtype is measured on a
    smaller matrix instead of overrunning the probe's time box."""
    clock = SimpleNamespace(now=0.0)
    sizes: list[int] = []

    def timed(a: torch.Tensor, b: torch.Tensor, repeats: int, device: torch.device) -> float:
        sizes.append(a.size(0))
        took = a.size(0) ** 3 / multiply_adds_per_second
        clock.now += took * repeats
        return took

    monkeypatch.setattr(measure, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    monkeypatch.setattr(measure, "_time_matmuls", timed)
    monkeypatch.setattr(measure, "_square_pair", lambda n, device, dtype: (torch.empty(n, 1), torch.empty(n, 1)))
    assert matmul_peak_flops(torch.device("cpu"), seconds=0.15) == pytest.approx(2 * multiply_adds_per_second)
    assert clock.now < 0.15 * 1.2  # the warm-up and one last product at most beyond the time box
    assert max(sizes) == (1024 if multiply_adds_per_second == 1e11 else 256)


def fake_products(monkeypatch: pytest.MonkeyPatch, seconds_per_product: list[float]) -> SimpleNamespace:
    """Products that take the given seconds in turn (the last one from then on), on a fake clock."""
    clock = SimpleNamespace(now=0.0, samples=0)

    def timed(a: torch.Tensor, b: torch.Tensor, repeats: int, device: torch.device) -> float:
        took = seconds_per_product[min(clock.samples, len(seconds_per_product) - 1)]
        clock.samples += 1
        clock.now += took * repeats
        return took

    monkeypatch.setattr(measure, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    monkeypatch.setattr(measure, "_time_matmuls", timed)
    monkeypatch.setattr(measure, "_square_pair", lambda n, device, dtype: (torch.empty(n, 1), torch.empty(n, 1)))
    return clock


def test_the_drift_probe_waits_out_a_slow_start_and_stops_once_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh process's first products are slow; the probe reads the settled speed, and stops
    DRIFT_PROBE_SETTLED samples after it instead of spending its whole time box."""
    settled = 512**3 / 1e11  # 1.3 ms a product
    clock = fake_products(monkeypatch, [5 * settled, 3 * settled, 2 * settled, 1.5 * settled, settled])
    flops, size = measure.probe_speed("cpu", "fp32")
    assert size == measure.DRIFT_PROBE_SIZE_CPU and flops == pytest.approx(2e11)
    assert clock.samples == 5 + measure.DRIFT_PROBE_SETTLED  # the warm-up, 3 slower samples, the best, 16 more
    assert clock.now < measure.DRIFT_PROBE_SECONDS / 2


def test_the_drift_probe_keeps_sampling_while_the_speed_still_improves_and_ends_at_its_time_box(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    improving = [0.01 * 0.98**i for i in range(200)]  # 2% faster every sample: never settled
    clock = fake_products(monkeypatch, improving)
    flops, _ = measure.probe_speed("cpu", "fp32")
    assert measure.DRIFT_PROBE_SECONDS <= clock.now < measure.DRIFT_PROBE_SECONDS + 0.01
    assert flops == pytest.approx(2 * 512**3 / improving[clock.samples - 1])  # the last, fastest sample


def test_a_drift_probe_slower_than_its_time_box_still_reads_its_one_product(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_products(monkeypatch, [0.5])  # bf16 on a CPU without bf16 kernels, say
    assert measure.probe_speed("cpu", "bf16")[0] == pytest.approx(2 * 512**3 / 0.5)


FAULTS_PER_STEP = """
import resource, sys
from minigpt import step
from minigpt.config import PRESETS
from minigpt.data import BatchSampler, Corpus
from minigpt.train import Budget, Trainer

if sys.argv[2] == "default":  # glibc as it comes: the trainer's setting left out
    step.keep_freed_memory = lambda: False
corpus = Corpus.from_text(open(sys.argv[1]).read()[:100_000], "shakespeare")
cfg = PRESETS["reference"].config()
trainer = Trainer(cfg, corpus, "cpu", 0, Budget(max_steps=1))
sampler = BatchSampler(corpus.train, cfg.block_size, cfg.batch_size, 0, trainer.device)
for _ in range(5):
    trainer.train_step.step(*sampler())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    trainer.train_step.step(*sampler())
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def faults_per_step(malloc: str) -> float:
    command = [sys.executable, "-c", FAULTS_PER_STEP, str(SHAKESPEARE), malloc]
    done = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), check=True, timeout=300)
    return float(done.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not allocator.glibc_malloc(), reason="glibc's malloc settings only exist on Linux with glibc")
def test_cpu_training_steps_reuse_freed_memory_without_page_faults() -> None:
    """At the reference recipe's size a step frees a few MB that glibc by default hands back to
    the kernel: 1,000-2,700 page faults per step on the machine this was written on. The
    trainer keeps that memory in the process, so a step after the first few faults almost never
    (0.1 to 47 per step across 8 runs, depending on the kernel and glibc). Both are counted here,
    on this machine, so the test compares the setting with glibc's default rather than with a
    count that belongs to one machine. Fresh processes, because once applied the setting holds
    for the rest of a process."""
    default = faults_per_step("default")
    if default < 200:
        pytest.skip(f"glibc's default here takes {default:.0f} page faults per step: nothing for the setting to save")
    kept = faults_per_step("kept")
    assert kept < default / 10, (kept, default)
