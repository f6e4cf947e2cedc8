"""Optimizers: OptimizerGroup behaves as one real torch Optimizer (state round trip, hooks,
schedulers, the trainer's learning-rate writes); BatchedMuon's update is torch.optim.Muon's."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch

from minigpt import components
from minigpt.components.muon import BatchedMuon, cpu_has_native_bf16, default_ns_dtype, newton_schulz
from minigpt.components.optimizers import OptimizerGroup
from minigpt.config import Config
from minigpt.model import GPT

from .conftest import TINY

VOCAB = 11


def muon_setup(seed: int) -> tuple[GPT, OptimizerGroup]:
    torch.manual_seed(seed)
    cfg = Config(**TINY, vocab_size=VOCAB, optimizer="muon")
    model = GPT(cfg)
    return model, components.optimizer.build("muon", model, cfg, torch.device("cpu"))


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(VOCAB, (4, 17), generator=torch.Generator().manual_seed(step))
    return ids[:, :-1], ids[:, 1:]


def train_step(model: GPT, optimizer: torch.optim.Optimizer, step: int) -> None:
    for group in optimizer.param_groups:  # as the trainer does: a schedule written into every group
        group["lr"] = 1e-2 / (1 + step)
    model(*batch(step))[1].backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dict_round_trip_continues_training_exactly() -> None:
    model, optimizer = muon_setup(seed=0)
    for step in range(3):
        train_step(model, optimizer, step)
    saved_model, saved_optimizer = round_trip(model.state_dict()), round_trip(optimizer.state_dict())
    # torch's format: every parameter numbered once across all groups, each with its state
    numbered = [i for group in saved_optimizer["param_groups"] for i in group["params"]]
    assert numbered == list(range(len(list(model.parameters()))))
    assert set(saved_optimizer["state"]) == set(numbered)

    restored, restored_optimizer = muon_setup(seed=1)
    restored.load_state_dict(saved_model)
    restored_optimizer.load_state_dict(saved_optimizer)
    stateless, stateless_optimizer = muon_setup(seed=1)
    stateless.load_state_dict(saved_model)
    for m, opt in ((model, optimizer), (restored, restored_optimizer), (stateless, stateless_optimizer)):
        train_step(m, opt, 3)
    for original, again in zip(model.parameters(), restored.parameters(), strict=True):
        assert torch.equal(original, again)
    # the momentum the restore carried matters: without it the same step lands elsewhere
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), stateless.parameters(), strict=True))


def test_learning_rates_written_into_the_group_reach_each_optimizer() -> None:
    _, optimizer = muon_setup(seed=0)
    assert len(optimizer.optimizers) == 2
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = 0.5 + i
    child_lrs = [group["lr"] for opt in optimizer.optimizers for group in opt.param_groups]
    assert child_lrs == [0.5 + i for i in range(len(optimizer.param_groups))]


def test_step_hooks_and_a_scheduler_work_on_the_group() -> None:
    model, optimizer = muon_setup(seed=0)
    calls = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append(("pre", opt)))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append(("post", opt)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    base = [group["lr"] for opt in optimizer.optimizers for group in opt.param_groups]
    model(*batch(0))[1].backward()
    optimizer.step()
    scheduler.step()
    assert calls == [("pre", optimizer), ("post", optimizer)]
    after = [group["lr"] for opt in optimizer.optimizers for group in opt.param_groups]
    assert after == pytest.approx([lr / 2 for lr in base])


def test_zero_grad_clears_every_optimizers_parameters() -> None:
    model, optimizer = muon_setup(seed=0)
    model(*batch(0))[1].backward()
    optimizer.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())


def test_a_group_added_to_the_group_itself_is_refused() -> None:
    _, optimizer = muon_setup(seed=0)
    with pytest.raises(TypeError, match="one of OptimizerGroup.optimizers"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})


BF16_TOLERANCE = {"rtol": 1.6e-2, "atol": 1e-5}  # torch.testing's defaults for bfloat16
MUON_SETTINGS = {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.95, "adjust_lr_fn": "match_rms_adamw"}
# two shapes batched, one tall (iterated transposed), one alone
SHAPES = [(24, 8), (24, 8), (24, 8), (16, 16), (16, 16), (8, 24)]


def muon_deltas(
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer], steps: int = 4
) -> list[torch.Tensor]:
    """How far each matrix moved after `steps` steps on fixed random gradients."""
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=generator) * 0.1 for shape in SHAPES]
    grads = [[torch.randn(shape, generator=generator) for shape in SHAPES] for _ in range(steps)]
    params = [torch.nn.Parameter(t.clone()) for t in start]
    optimizer = make(params)
    for step_grads in grads:
        for p, grad in zip(params, step_grads, strict=True):
            p.grad = grad.clone()
        optimizer.step()
    return [p.detach() - t for p, t in zip(params, start, strict=True)]


def test_batched_muon_in_bfloat16_equals_torch_muon() -> None:
    reference = muon_deltas(lambda params: torch.optim.Muon(params, **MUON_SETTINGS))
    batched = muon_deltas(lambda params: BatchedMuon(params, ns_dtype=torch.bfloat16, **MUON_SETTINGS))
    # batched and single bf16 matmuls may round differently (CPUs with native bf16 kernels do)
    for ref, new in zip(reference, batched, strict=True):
        torch.testing.assert_close(new, ref, **BF16_TOLERANCE)


def test_batched_muon_in_float32_matches_torch_muon_to_bfloat16_rounding() -> None:
    reference = muon_deltas(lambda params: torch.optim.Muon(params, **MUON_SETTINGS))
    batched = muon_deltas(lambda params: BatchedMuon(params, ns_dtype=torch.float32, **MUON_SETTINGS))
    for ref, new in zip(reference, batched, strict=True):
        assert (new - ref).norm() < 0.03 * ref.norm()


def test_batched_newton_schulz_treats_each_matrix_on_its_own() -> None:
    stack = torch.randn(5, 24, 8, generator=torch.Generator().manual_seed(0))
    stack[2] *= 100  # normalized per matrix, so a large one changes nothing for the others
    together = newton_schulz(stack, (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float32)
    for i in range(len(stack)):
        alone = newton_schulz(stack[i : i + 1], (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float32)[0]
        torch.testing.assert_close(together[i], alone)
    # orthogonalized: singular values near 1 (the quintic's fixed band), not the input's spread
    singular = torch.linalg.svdvals(together)
    assert singular.min() > 0.5 and singular.max() < 1.5


@pytest.mark.parametrize("native_bf16", [True, False])
def test_newton_schulz_runs_in_bfloat16_where_the_cpu_has_native_bf16(
    monkeypatch: pytest.MonkeyPatch, native_bf16: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    cpu_has_native_bf16.cache_clear()  # the answer is cached: ask the patched CPU
    expected = torch.bfloat16 if native_bf16 else torch.float32
    assert default_ns_dtype(torch.device("cpu")) == expected
    assert default_ns_dtype(torch.device("cuda")) == torch.bfloat16
    cpu_has_native_bf16.cache_clear()  # and the real one again once the patches are undone
