"""One training step: the refactor into TrainStep left every loss where it was, and the
trainer, the interleaved speed phase and the benchmark suite all time that one step."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import torch

from minigpt import bundled
from minigpt.config import Config
from minigpt.data import Corpus, load_corpus
from minigpt.model import GPT
from minigpt.speed import Contender
from minigpt.step import TrainStep
from minigpt.train import Budget, Trainer

from .conftest import SHAKESPEARE, TINY

# Recorded from the trainer before its step moved into minigpt/step.py (one CPU thread):
# per-step train loss and the 2-batch validation estimate after it, at seed 0.
FP32_TRAIN = [4.183542728424072, 4.164516448974609, 4.1689348220825195, 4.143207550048828, 4.150259971618652,
              4.111354827880859, 4.084475994110107, 4.014922618865967, 4.03076696395874, 3.9421472549438477,
              3.9531185626983643, 3.9154317378997803, 3.9351859092712402, 3.8819005489349365, 3.92659854888916,
              3.9096269607543945, 3.8727993965148926, 3.900587797164917, 3.9822921752929688, 3.8025543689727783]  # fmt: skip
FP32_VAL = [4.165899276733398, 4.154609680175781, 4.138795852661133, 4.11590576171875, 4.088905334472656,
            4.06085205078125, 4.033490180969238, 4.004545211791992, 3.9772090911865234, 3.9515841007232666,
            3.9274115562438965, 3.9063310623168945, 3.888082981109619, 3.872039318084717, 3.859031915664673,
            3.8484575748443604, 3.8406028747558594, 3.8345088958740234, 3.8301188945770264, 3.8265650272369385]  # fmt: skip
# fp16 autocast with its loss scaler, and Muon beside AdamW
FP16_MUON_TRAIN = [4.1835455894470215, 4.169044494628906, 4.172361373901367, 4.157773971557617, 4.161897659301758,
                   4.134154319763184, 4.116445541381836, 4.061465263366699, 4.08538293838501, 4.008896350860596,
                   4.00525426864624, 3.9807071685791016, 3.983051061630249, 3.9239449501037598, 3.9503204822540283,
                   3.9475786685943604, 3.9112443923950195, 3.9257702827453613, 3.991041660308838, 3.866115093231201]  # fmt: skip
RECORDED = Config(**TINY, eval_interval=1, eval_batches=2, dropout=0.1, warmup_steps=5)
RECORDED_ON = ("AVX2", "2.13.0+cpu")  # torch's CPU capability and version where the losses above were recorded
# Elsewhere torch's kernels round differently per instruction set: the largest relative differences
# measured were 1.2e-7 in fp32 and 1.2e-5 in fp16 (AVX512 with AMX; 6e-8 in fp32 on an AVX512 EPYC).
# Ten times those still catches any change to what a step computes, which moves a loss by far more.
FP32_REL, FP16_REL = 1e-6, 1e-4


def matches(losses: list[float], recorded: list[float], rel: float) -> bool:
    """Bit for bit where the values were recorded, within `rel` on other kernels."""
    if (torch.backends.cpu.get_cpu_capability(), torch.__version__) == RECORDED_ON:
        return losses == recorded
    return losses == pytest.approx(recorded, rel=rel, abs=0)


@pytest.fixture(scope="module")
def shakespeare() -> Corpus:
    return load_corpus(SHAKESPEARE)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Reductions split over threads add in another order: the recorded numbers are one thread's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def points(cfg: Config, corpus: Corpus) -> list[dict]:
    return list(Trainer(cfg, corpus, "cpu", 0, Budget(max_steps=20)).run())


@pytest.mark.usefixtures("one_thread")
def test_the_trainer_loses_exactly_what_it_lost_before_the_step_was_its_own(shakespeare: Corpus) -> None:
    fp32 = points(RECORDED, shakespeare)
    assert matches([p["train_loss"] for p in fp32], FP32_TRAIN, FP32_REL)
    assert matches([p["val_loss"] for p in fp32], FP32_VAL, FP32_REL)
    fp16 = points(RECORDED.replace(precision="fp16", optimizer="muon"), shakespeare)
    assert matches([p["train_loss"] for p in fp16], FP16_MUON_TRAIN, FP16_REL)


def suite_module(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A module of the benchmark suite, loaded from its file as pytest would load it (for this
    test only: its dataclasses need it in sys.modules while they are built)."""
    spec = importlib.util.spec_from_file_location(f"suite_{name}", bundled.BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


class FakeBenchmark:
    """pytest-benchmark's fixture, calling what it times once and counting the steps it took."""

    def __init__(self, steps: list[TrainStep]) -> None:
        self.steps, self.timed_steps = steps, 0

    def __call__(self, call: Callable[[], None]) -> None:
        before = len(self.steps)
        call()
        self.timed_steps = len(self.steps) - before


def test_the_trainer_the_speed_phase_and_the_suite_all_time_the_one_train_step(
    shakespeare: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    stepped: list[TrainStep] = []
    step = TrainStep.step

    def counted(self: TrainStep, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        stepped.append(self)
        return step(self, x, y)

    monkeypatch.setattr(TrainStep, "step", counted)
    cfg = Config(**TINY, eval_interval=2, eval_batches=1)

    trainer = Trainer(cfg, shakespeare, "cpu", 0, Budget(max_steps=3))
    list(trainer.run())
    assert stepped == [trainer.train_step] * 3

    stepped.clear()
    contender = Contender("baseline", cfg, shakespeare, "cpu", 0)
    contender.seconds_per_step(2)
    assert stepped == [contender.train_step] * 2

    stepped.clear()
    suite_cfg = cfg.replace(vocab_size=shakespeare.tokenizer.vocab_size)
    case = suite_module("conftest", monkeypatch).BenchCase("baseline", torch.device("cpu"), suite_cfg, GPT(suite_cfg))
    benchmark = FakeBenchmark(stepped)
    suite_module("test_variants", monkeypatch).test_train_step(benchmark, case)
    assert benchmark.timed_steps == 1 and len(stepped) == 2  # an untimed first call, then the timed one
    assert isinstance(stepped[0], TrainStep) and benchmark.extra_info["case"] == "train_step"
