"""The trainer: it learns, it is deterministic, it stops on NaN, budgets hold, every variant
learns, and Muon really steps the hidden matrices."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt import components
from minigpt.components.optimizers import OptimizerGroup, hidden_matrices
from minigpt.config import Config
from minigpt.data import Corpus, load_corpus
from minigpt.model import GPT
from minigpt.train import Budget, Diverged, Trainer, lr_at
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
    # Newton-Schulz flattens the update's spectrum; Adam's elementwise update does not
    assert flat_spectrum_share("muon", shakespeare) > 0.9
    assert flat_spectrum_share("adamw", shakespeare) < 0.8
