"""Every registered building block, found through its registry so that a new one is tested with no
edit here (as tests/test_every_variant.py does for variants): chosen by its Config key in the
cpu-fast recipe at a tiny size, it builds, keeps the shape contract, stays causal, gives every
weight a gradient, trains, and decodes with the cache as the plain loop does. Each kind also
keeps the contract the code around it relies on: schedules warm up and stay within [min_lr, lr],
optimizers follow the learning rate the trainer sets, heads score only with targets, inits draw
from the seed. The trackers are checked over their registry the same way."""

from __future__ import annotations

import sys

import pytest
import torch

from minigpt import components
from minigpt.components import registries
from minigpt.components.contracts import check_components
from minigpt.config import Config
from minigpt.generate import generate
from minigpt.model import GPT
from minigpt.registry import Registry
from minigpt.trackers import tracker, tracker_names
from minigpt.variants import discover

from .conftest import BLOCK, ROOT, VOCAB, plain_loop, random_model, tiny_recipe, train_on_a_cycle

discover()  # a built-in variant file may register components of its own
# each name once: the recipe's own choices (sdpa, layernorm, muon, ...) all train the recipe itself
CHOICES = [pytest.param("optimizer", tiny_recipe().optimizer, id="the recipe")] + [
    pytest.param(registry.kind, name, id=f"{registry.kind}={name}")
    for registry in components.CHOSEN_BY_CONFIG
    for name in registry.names()
    if name != getattr(tiny_recipe(), registry.kind)
]


def chosen(kind: str, name: str) -> Config:
    return tiny_recipe().replace(**{kind: name})


def test_every_registry_is_chosen_by_its_config_key_and_its_default_is_registered() -> None:
    defined = {value.kind for value in vars(registries).values() if isinstance(value, Registry)}
    assert defined == {registry.kind for registry in components.CHOSEN_BY_CONFIG}  # none left out of CHOICES
    for registry in components.CHOSEN_BY_CONFIG:
        assert getattr(Config(), registry.kind) in registry.names()


@pytest.mark.parametrize(("kind", "name"), CHOICES)
def test_the_choice_builds_keeps_the_shape_contract_is_causal_and_reaches_every_weight(kind: str, name: str) -> None:
    cfg = chosen(kind, name)
    torch.manual_seed(0)
    model = GPT(cfg)
    assert getattr(model.cfg, kind) == name
    check_components(model)  # raises a ContractError naming a component of the wrong shape or dtype
    idx = torch.randint(cfg.vocab_size, (2, BLOCK))
    changed = idx.clone()
    changed[:, 5] = (changed[:, 5] + 1) % cfg.vocab_size
    model.eval()
    torch.testing.assert_close(model(idx)[0][:, :5], model(changed)[0][:, :5])  # nothing sees a later token
    model.train()
    logits, loss = model(idx, changed)
    assert logits.shape == (2, BLOCK, cfg.vocab_size) and loss.shape == () and torch.isfinite(loss)
    loss.backward()
    unreached = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not unreached


@pytest.mark.parametrize(("kind", "name"), CHOICES)
def test_the_choice_trains(kind: str, name: str) -> None:
    losses = train_on_a_cycle(chosen(kind, name), steps=30)
    assert torch.isfinite(losses).all()
    assert losses[-5:].mean() < 0.7 * losses[:5].mean()


@pytest.mark.parametrize(("kind", "name"), CHOICES)
def test_cached_decoding_with_the_choice_equals_the_plain_loop_past_block_size(kind: str, name: str) -> None:
    model = random_model(chosen(kind, name))
    prompt, steps = [1, 2, 3], 3 * BLOCK
    assert generate(model, prompt, steps, temperature=0)[0].tolist() == plain_loop(model, prompt, steps)


# what the code around each kind relies on


@pytest.mark.parametrize("name", components.schedule.names())
def test_the_schedule_warms_up_linearly_then_stays_within_lr_and_min_lr_never_rising(name: str) -> None:
    cfg = Config(lr=1e-2, min_lr=1e-3, warmup_steps=4, schedule=name)
    lr_at = components.schedule.get(name)
    assert [lr_at(cfg, step, 0.0) for step in range(4)] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])
    after = [lr_at(cfg, 4 + i, i / 20) for i in range(21)]
    assert after[0] == pytest.approx(cfg.lr)
    assert all(cfg.min_lr - 1e-12 <= lr <= cfg.lr + 1e-12 for lr in after)
    assert all(later <= earlier + 1e-12 for earlier, later in zip(after, after[1:], strict=False))


@pytest.mark.parametrize("name", components.optimizer.names())
def test_the_optimizer_holds_every_weight_once_and_moves_it_only_at_the_lr_it_is_set(name: str) -> None:
    cfg = chosen("optimizer", name)
    torch.manual_seed(0)
    model = GPT(cfg)
    optimizer = components.optimizer.build(name, model, cfg, torch.device("cpu"))
    held = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(held) == sorted(id(p) for p in model.parameters())
    idx = torch.randint(cfg.vocab_size, (2, BLOCK))
    for lr, moves in ((0.0, False), (cfg.lr, True)):
        for group in optimizer.param_groups:  # as TrainStep.set_lr drives it
            group["lr"] = lr
        before = [p.detach().clone() for p in model.parameters()]
        model(idx, idx)[1].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)]
        assert any(moved) if moves else not any(moved)


@pytest.mark.parametrize("name", components.head.names())
def test_the_head_returns_logits_of_the_vocabulary_and_a_loss_only_with_targets(name: str) -> None:
    model = random_model(chosen("head", name))
    idx = torch.randint(len(VOCAB), (2, BLOCK))
    logits, loss = model(idx)
    assert logits.shape == (2, BLOCK, len(VOCAB)) and loss is None
    assert model(idx, idx)[1].shape == ()


@pytest.mark.parametrize("name", components.init.names())
def test_the_init_draws_from_the_seed(name: str) -> None:
    def weights(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [p.detach() for p in GPT(chosen("init", name)).parameters()]

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("name", tracker_names())
def test_the_tracker_names_an_extra_that_installs_its_library(name: str) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = tracker.get(name)
    assert any(requirement.startswith(wanted.library) for requirement in extras[wanted.extra])
    assert callable(wanted) and callable(wanted.publish)
