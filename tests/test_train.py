"""The trainer: it learns, it is deterministic, it stops on NaN, budgets hold, every variant
learns, and Muon really steps the hidden matrices."""

from __future__ import annotations

import math
import shutil
import time

import pytest
import torch

from minigpt import components
from minigpt.components.optimizers import OptimizerGroup, hidden_matrices
from minigpt.config import Config
from minigpt.data import Corpus, load_corpus
from minigpt.evaluate import EVAL_BATCH_SIZE, Diverged, Evaluator, Patience, target_stop_reason
from minigpt.model import GPT
from minigpt.precision import Precision
from minigpt.train import Budget, Trainer, lr_at
from minigpt.variants import discover

from .conftest import SHAKESPEARE, TINY


@pytest.fixture(scope="module")
def shakespeare() -> Corpus:
    return load_corpus(SHAKESPEARE)


def train(cfg: Config, corpus: Corpus, steps: int, seed: int = 0) -> Trainer:
    trainer = Trainer(cfg, corpus, "cpu", seed, Budget(max_steps=steps))
    for _ in trainer.run():
        pass
    return trainer


def test_overfits_a_tiny_string_to_near_zero_loss() -> None:
    corpus = Corpus.from_text("hello world, this is minigpt-bench! " * 8, "tiny")
    cfg = Config(**TINY, lr=1e-2, min_lr=1e-2, warmup_steps=0, eval_interval=50, eval_batches=2)
    trainer = train(cfg, corpus, steps=300)
    assert trainer.result.best_val_loss < 0.1


@pytest.mark.slow
def test_a_short_run_on_shakespeare_gets_below_2_5(shakespeare: Corpus) -> None:
    cfg = Config(eval_interval=100, eval_batches=10)
    trainer = train(cfg, shakespeare, steps=200)
    assert trainer.result.best_val_loss < 2.5
    assert trainer.result.status == "completed"


def test_the_same_seed_gives_identical_losses(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, eval_interval=5, eval_batches=2, dropout=0.1)

    def losses(seed: int) -> list[float]:
        trainer = Trainer(cfg, shakespeare, "cpu", seed, Budget(max_steps=20))
        return [(p["train_loss"], p["val_loss"]) for p in trainer.run()]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_nan_loss_ends_the_trial_as_diverged(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, lr=1e12, min_lr=1e12, warmup_steps=0, grad_clip=0.0, eval_interval=5, eval_batches=1)
    with pytest.raises(Diverged, match="became"):
        train(cfg, shakespeare, steps=200)


def test_budgets_stop_at_steps_tokens_and_seconds(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, eval_interval=1000, eval_batches=1)
    assert train(cfg, shakespeare, steps=7).result.steps == 7
    by_tokens = Trainer(cfg, shakespeare, "cpu", 0, Budget(max_tokens=4 * 16 * 5 + 1))
    list(by_tokens.run())
    assert by_tokens.result.steps == 6  # the step that crosses the budget still runs
    by_time = Trainer(cfg, shakespeare, "cpu", 0, Budget(max_seconds=0.5))
    points = list(by_time.run())
    assert by_time.result.stop_reason == "time budget"
    assert points[-1]["val_loss"] is not None  # a final evaluation always happens
    evaluated = Trainer(cfg.replace(eval_interval=5), shakespeare, "cpu", 0, Budget(max_steps=12))
    assert [p["step"] for p in evaluated.run() if p["val_loss"] is not None] == [5, 10, 12]
    on_the_interval = Trainer(cfg.replace(eval_interval=5), shakespeare, "cpu", 0, Budget(max_steps=10))
    assert [p["step"] for p in on_the_interval.run() if p["val_loss"] is not None] == [5, 10]  # never twice


def test_stop_at_target_ends_the_trial_at_the_first_evaluation_reaching_it(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, eval_interval=5, eval_batches=1)
    trainer = Trainer(cfg, shakespeare, "cpu", 0, Budget(max_steps=500, stop_at_target=True), target_loss=4.5)
    list(trainer.run())
    assert trainer.result.stop_reason == "target loss reached"
    assert trainer.result.steps == 5
    assert trainer.result.time_to_target_s is not None


def test_early_stopping_waits_patience_evaluations(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, lr=1e-9, min_lr=1e-9, warmup_steps=0, eval_interval=2, eval_batches=1, patience=2)
    trainer = train(cfg, shakespeare, steps=1000)
    assert trainer.result.stop_reason.startswith("early stop")
    assert trainer.result.steps < 50


def test_schedule_warms_up_linearly_then_decays_to_min_lr() -> None:
    cfg = Config(lr=1.0, min_lr=0.1, warmup_steps=10)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_at(cfg, 9, 0.0) == pytest.approx(1.0)
    assert lr_at(cfg, 10, 0.5) == pytest.approx(0.55)
    assert lr_at(cfg, 50, 1.0) == pytest.approx(0.1)


def test_step_timings_and_eval_time_are_kept_apart(shakespeare: Corpus) -> None:
    trainer = train(Config(**TINY, eval_interval=10, eval_batches=4), shakespeare, steps=30)
    result = trainer.result
    assert len(result.step_seconds) == 30
    assert result.eval_seconds > 0
    assert result.train_seconds + result.eval_seconds <= result.wall_seconds
    speed = result.speed(trainer.tokens_per_step)
    assert speed["step_ms_p50"] <= speed["step_ms_p90"]
    assert math.isclose(speed["tokens_per_sec"], 4 * 16 / (speed["step_ms_p50"] / 1000))


def val_loss(model: GPT, corpus: Corpus, cfg: Config) -> float:
    gen = torch.Generator().manual_seed(0)
    starts = torch.randint(len(corpus.val) - cfg.block_size - 1, (16,), generator=gen)
    window = torch.stack([corpus.val[s : s + cfg.block_size + 1] for s in starts]).long()
    model.eval()
    with torch.no_grad():
        return model(window[:, :-1], window[:, 1:])[1].item()


REGISTRY = discover()


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_variant_trains_and_lowers_the_loss(name: str, shakespeare: Corpus) -> None:
    base = Config(n_layer=2, n_head=4, n_embd=32, block_size=32, batch_size=8, warmup_steps=5, eval_interval=30, eval_batches=1)  # fmt: skip
    cfg = REGISTRY.get(name).configure(base)
    trainer = Trainer(cfg, shakespeare, "cpu", 0, Budget(max_steps=30))
    before = val_loss(trainer.model, shakespeare, trainer.cfg)
    list(trainer.run())
    assert val_loss(trainer.model, shakespeare, trainer.cfg) < before - 0.3


def flat_spectrum_share(optimizer_name: str, corpus: Corpus) -> float:
    """Share of the hidden matrices' first-update singular values within 3x of the largest."""
    cfg = Config(**TINY, vocab_size=corpus.tokenizer.vocab_size, weight_decay=0.0)
    torch.manual_seed(0)
    model = GPT(cfg)
    optimizer = components.optimizer.build(optimizer_name, model, cfg, torch.device("cpu"))
    hidden = hidden_matrices(model)
    before = [p.detach().clone() for p in hidden]
    x = corpus.train[: 4 * 17].long().view(4, 17)
    model(x[:, :-1], x[:, 1:])[1].backward()
    optimizer.step()
    shares = []
    for old, new in zip(before, hidden, strict=True):
        singular = torch.linalg.svdvals(new.detach() - old)
        shares.append((singular > singular.max() / 3).float().mean().item())
    return sum(shares) / len(shares)


def test_muon_steps_the_hidden_matrices_with_orthogonalized_updates(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, vocab_size=shakespeare.tokenizer.vocab_size, optimizer="muon")
    model = GPT(cfg)
    optimizer = components.optimizer.build("muon", model, cfg, torch.device("cpu"))
    assert isinstance(optimizer, OptimizerGroup)
    muon = next(opt for opt in optimizer.optimizers if isinstance(opt, torch.optim.Muon))
    hidden = hidden_matrices(model)
    assert {id(p) for g in muon.param_groups for p in g["params"]} == {id(p) for p in hidden}
    assert not {id(model.wte.weight), id(model.lm_head.weight)} & {id(p) for p in hidden}
    # Newton-Schulz flattens the update's spectrum; Adam's elementwise update does not. Measured
    # over model seeds 0-3: Muon 0.906-0.938, AdamW 0.516-0.547; the bounds sit about halfway,
    # so a different BLAS moving either by a few hundredths does not decide the test.
    assert flat_spectrum_share("muon", shakespeare) > 0.75
    assert flat_spectrum_share("adamw", shakespeare) < 0.7


def losses_of(trainer: Trainer) -> list[float]:
    return [p["train_loss"] for p in trainer.run() if p["train_loss"] is not None]


def test_bf16_autocast_trains_with_finite_falling_loss_and_float32_weights(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, precision="bf16", lr=1e-2, warmup_steps=5, eval_interval=15, eval_batches=2)
    trainer = Trainer(cfg, shakespeare, "cpu", 0, Budget(max_steps=60))
    points = list(trainer.run())
    assert trainer.precision == "bf16"
    val = [p["val_loss"] for p in points if p["val_loss"] is not None]
    assert all(math.isfinite(v) for v in val)
    # Falling, not step by step: the last of four evaluations fell only 0.006-0.026 nats (seeds 0-2),
    # within bf16's rounding, while the whole run fell 0.23-0.31 and ended 0.27-0.39 under the bound.
    assert val[-1] < val[0] - 0.1
    assert val[-1] < math.log(65) - 0.8  # 65 characters: ln 65 untrained
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_bf16_runs_the_forward_in_bf16_on_float32_parameters(shakespeare: Corpus) -> None:
    trainer = Trainer(Config(**TINY, precision="bf16"), shakespeare, "cpu", 0, Budget(max_steps=1))
    x = shakespeare.train[:32].long().view(2, 16)
    with trainer.train_step.precision.autocast():
        logits, loss = trainer.model(x, x)
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32  # cross-entropy autocasts up: the loss keeps its precision
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}
    with trainer.train_step.precision.autocast():
        pass
    assert trainer.model(x)[0].dtype == torch.float32  # outside the region, plain fp32 again


def test_fp16_scales_the_loss_and_clips_the_unscaled_gradients(
    shakespeare: Corpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    norms: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm):  # noqa: ANN001, ANN202
        norm = clip(params, max_norm)
        norms.append(norm.item())
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    cfg = Config(**TINY, lr=1e-2, warmup_steps=5, eval_interval=15, eval_batches=2)
    trainer = Trainer(cfg.replace(precision="fp16"), shakespeare, "cpu", 0, Budget(max_steps=60))
    points = list(trainer.run())
    scaler = trainer.train_step.scaler
    assert trainer.precision == "fp16" and scaler is not None
    assert scaler.get_scale() > 1  # the loss really was scaled up...
    finite = [n for n in norms if math.isfinite(n)]
    assert len(finite) > 50 and max(finite) < 50  # ...and unscaled before clipping
    fp32 = Trainer(cfg.replace(precision="fp32"), shakespeare, "cpu", 0, Budget(max_steps=60))
    fp32_val = [p["val_loss"] for p in fp32.run() if p["val_loss"] is not None]
    val = [p["val_loss"] for p in points if p["val_loss"] is not None]
    assert val == pytest.approx(fp32_val, abs=0.05)
    assert val[-1] < math.log(65) - 0.8


def test_tf32_on_cpu_is_plain_fp32(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, eval_interval=5, eval_batches=1)
    fp32 = Trainer(cfg.replace(precision="fp32"), shakespeare, "cpu", 0, Budget(max_steps=10))
    tf32 = Trainer(cfg.replace(precision="tf32"), shakespeare, "cpu", 0, Budget(max_steps=10))
    assert losses_of(fp32) == losses_of(tf32)
    assert tf32.precision == "tf32" and tf32.train_step.scaler is None
    assert Trainer(cfg, shakespeare, "cpu", 0, Budget(max_steps=1)).precision == "fp32"  # auto on cpu


def c_compiler() -> str | None:
    return next(filter(None, (shutil.which(name) for name in ("g++", "c++", "clang++"))), None)


@pytest.mark.slow
@pytest.mark.skipif(c_compiler() is None, reason="torch.compile's inductor backend needs a C++ compiler on a CPU")
def test_compile_time_is_measured_apart_and_leaves_the_trajectory_alone(shakespeare: Corpus) -> None:
    """Every compilation happens in the warm-up the trainer times apart, none in a timed step:
    dynamo's own counters, read when the warm-up ends and after training, say so on any machine."""
    from torch._dynamo.utils import counters

    cfg = Config(**{**TINY, "n_layer": 1}, lr=1e-2, warmup_steps=0, eval_interval=5, eval_batches=1)
    compiled = Trainer(cfg.replace(compile="default"), shakespeare, "cpu", 0, Budget(max_steps=10))
    eager = Trainer(cfg, shakespeare, "cpu", 0, Budget(max_steps=10))
    warm_up, compiled_by = compiled.train_step.warm_up, {}

    def counting_warm_up(x: torch.Tensor, y: torch.Tensor) -> float:
        counters.clear()
        seconds = warm_up(x, y)
        compiled_by["warm-up"] = {kind: dict(counts) for kind, counts in counters.items()}
        return seconds

    compiled.train_step.warm_up = counting_warm_up
    compiled_losses, eager_losses = losses_of(compiled), losses_of(eager)
    result = compiled.result
    assert result.compile_seconds > 0 and eager.result.compile_seconds is None
    assert result.steps == 10 and len(result.step_seconds) == 10 and result.tokens == 10 * 4 * 16
    assert compiled_by["warm-up"]["frames"]["ok"] >= 1 and compiled_by["warm-up"]["aot_autograd"]["ok"] >= 1
    assert {kind: dict(counts) for kind, counts in counters.items()} == compiled_by["warm-up"]  # nothing since
    # no optimizer step in the warm-up: the weights follow the uncompiled trial's
    assert compiled_losses == pytest.approx(eager_losses, abs=1e-5)
    for mine, theirs in zip(compiled.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_every_batch_size_is_scored_on_the_same_validation_text(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, eval_interval=5, eval_batches=3)
    evaluators = [
        Trainer(cfg.replace(batch_size=batch_size), shakespeare, "cpu", 0, Budget(max_steps=5)).evaluator
        for batch_size in (4, 12)
    ]
    small, large = ([torch.cat([x, y], dim=1) for x, y in e.batches] for e in evaluators)
    assert len(small) == len(large) == 3
    assert all(torch.equal(a, b) for a, b in zip(small, large, strict=True))
    assert small[0].shape == (EVAL_BATCH_SIZE, 2 * 16)


def evaluator(cfg: Config, corpus: Corpus, target_loss: float | None = None) -> Evaluator:
    return Evaluator(corpus.val, cfg, torch.device("cpu"), Precision.resolve("fp32", torch.device("cpu")), target_loss)


def test_the_estimate_is_the_mean_loss_over_the_fixed_batches(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, vocab_size=shakespeare.tokenizer.vocab_size, eval_batches=3)
    torch.manual_seed(0)
    model = GPT(cfg).train()
    scorer = evaluator(cfg, shakespeare)
    by_hand = []
    with torch.no_grad():
        for x, y in scorer.batches:
            by_hand.append(model.eval()(x, y)[1].item())
    model.train()
    evaluation = scorer.evaluate(model, step=0, started=time.perf_counter())
    assert evaluation.val_loss == pytest.approx(sum(by_hand) / 3, rel=1e-6)
    assert evaluation.confirmed_val_loss is None  # no target: nothing to confirm
    assert model.training  # handed back in training mode
    assert scorer.seconds > 0


def test_a_nan_validation_loss_is_divergence(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, vocab_size=shakespeare.tokenizer.vocab_size, eval_batches=1)
    model = GPT(cfg)
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(Diverged, match="validation loss became nan at step 7"):
        evaluator(cfg, shakespeare).evaluate(model, step=7, started=time.perf_counter())


class ScriptedEvaluator(Evaluator):
    """An Evaluator whose estimate is always `estimate` and whose whole-split losses are
    `whole_split` in turn; records the size of every batch list it scores."""

    def __init__(self, cfg: Config, corpus: Corpus, target: float, estimate: float, whole_split: list[float]) -> None:
        super().__init__(corpus.val, cfg, torch.device("cpu"), Precision.resolve("fp32", torch.device("cpu")), target)
        self.estimate, self.answers, self.asked = estimate, iter(whole_split), []

    def loss(self, model: torch.nn.Module, batches: list) -> float:
        self.asked.append(len(batches))
        return self.estimate if batches is self.batches else next(self.answers)


def test_a_crossing_the_whole_split_does_not_confirm_is_no_crossing(shakespeare: Corpus) -> None:
    scorer = ScriptedEvaluator(Config(**TINY, eval_batches=2), shakespeare, 2.0, estimate=1.0, whole_split=[3.0] * 3)
    started = time.perf_counter()
    evaluations = [scorer.evaluate(None, step, started) for step in (5, 10, 15)]
    assert scorer.time_to_target_s is None
    assert [e.confirmed_val_loss for e in evaluations] == [3.0] * 3  # checked again at every crossing
    assert [e.val_loss for e in evaluations] == [1.0] * 3
    assert scorer.asked.count(2) == 3 and len(scorer.asked) == 6
    assert target_stop_reason(True, scorer.time_to_target_s) == ""


def test_the_first_confirmed_crossing_sets_the_time_of_the_estimate(shakespeare: Corpus) -> None:
    scorer = ScriptedEvaluator(Config(**TINY, eval_batches=2), shakespeare, 2.0, estimate=1.0, whole_split=[3.0, 1.5])
    started = time.perf_counter()
    first, second = scorer.evaluate(None, 5, started), scorer.evaluate(None, 10, started)
    assert (first.confirmed_val_loss, second.confirmed_val_loss) == (3.0, 1.5)
    assert 0 < scorer.time_to_target_s <= time.perf_counter() - started
    assert scorer.evaluate(None, 15, started).confirmed_val_loss is None  # reached: never confirmed again
    assert len(scorer.asked) == 5
    assert target_stop_reason(True, scorer.time_to_target_s) == "target loss reached"
    assert target_stop_reason(False, scorer.time_to_target_s) == ""


def test_the_trainer_stops_at_the_first_crossing_the_whole_split_confirms(shakespeare: Corpus) -> None:
    cfg = Config(**TINY, eval_interval=5, eval_batches=2)
    trainer = Trainer(cfg, shakespeare, "cpu", 0, Budget(max_steps=50, stop_at_target=True), target_loss=2.0)
    trainer.evaluator = ScriptedEvaluator(cfg, shakespeare, 2.0, estimate=1.0, whole_split=[3.0, 1.5])
    points = list(trainer.run())
    assert trainer.result.steps == 10 and trainer.result.stop_reason == "target loss reached"
    assert [p["confirmed_val_loss"] for p in points] == [3.0, 1.5]
    assert 0 < trainer.result.time_to_target_s <= points[-1]["seconds"] + 1e-4  # points round to 0.1 ms


def test_a_whole_split_estimate_needs_no_second_evaluation(shakespeare: Corpus) -> None:
    scorer = ScriptedEvaluator(Config(**TINY, eval_batches=0), shakespeare, 2.0, estimate=1.0, whole_split=[])
    evaluation = scorer.evaluate(None, 5, time.perf_counter())
    assert scorer.time_to_target_s is not None
    assert len(scorer.asked) == 1 and evaluation.confirmed_val_loss == 1.0


def test_patience_counts_evaluations_without_a_new_best() -> None:
    patience = Patience(2)
    assert [patience.stop_reason(improved) for improved in (True, False, True, False)] == [""] * 4
    assert patience.stop_reason(False) == "early stop: no gain in 2 evaluations"
    never = Patience(0)
    assert all(never.stop_reason(False) == "" for _ in range(10))


def test_auto_preset_is_gpu_fast_only_when_every_device_is_a_gpu() -> None:
    from minigpt.config import PRESETS, choose_preset

    assert choose_preset("auto", ["cuda"]) == "gpu-fast"
    assert choose_preset("auto", ["cuda:0", "cuda:1", "mps"]) == "gpu-fast"
    assert choose_preset("auto", ["cpu", "cuda"]) == "cpu-fast"
    assert choose_preset("auto", []) == "cpu-fast"
    assert choose_preset("reference", ["cuda"]) == "reference"
    gpu = PRESETS["gpu-fast"].config()
    assert (gpu.n_layer, gpu.n_embd, gpu.block_size, gpu.compile) == (6, 384, 256, "reduce-overhead")
