"""The contract every block, attention, MLP and norm keeps: it returns a tensor of its input's
shape and dtype, (B, T, n_embd). Checked once on a two-token batch before training, so that a
plugin breaking it fails its trial with one line naming its file and what was expected, rather
than with a traceback from deep inside a later layer."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from minigpt.components.registries import attention, block, embedding, mlp, norm
from minigpt.errors import UserError

CHECKED = (block, attention, mlp, norm, embedding)


class ContractError(UserError):
    """A component whose output does not fit the model around it."""


def check_components(model: nn.Module) -> None:
    """Run `model` once on two tokens and check every registered component's output."""
    kinds = {factory: registry.kind for registry in CHECKED for factory in registry.factories()}
    failures: list[str] = []
    hooks = [
        module.register_forward_hook(_checker(kinds[type(module)], failures))
        for module in model.modules()
        if type(module) in kinds
    ]
    try:
        with _evaluating(model), torch.no_grad():
            tokens = torch.zeros(1, min(2, model.cfg.block_size), dtype=torch.long, device=model.lm_head.weight.device)
            model(tokens)
    except Exception:  # a component's wrong output may break the next one first: report the first
        if not failures:
            raise
    finally:
        for hook in hooks:
            hook.remove()
    if failures:
        raise ContractError(failures[0])


def _checker(kind: str, failures: list[str]):  # noqa: ANN202
    def check(module: nn.Module, inputs: tuple, output: object) -> None:
        x = inputs[0]
        if failures or not isinstance(x, torch.Tensor):
            return
        got = f"{tuple(output.shape)} {output.dtype}" if isinstance(output, torch.Tensor) else type(output).__name__
        if not isinstance(output, torch.Tensor) or output.shape != x.shape or output.dtype != x.dtype:
            source = inspect.getsourcefile(type(module)) or type(module).__module__
            failures.append(
                f"{kind} {type(module).__name__} from {source} returned {got}; "
                f"expected its input's shape and dtype, {tuple(x.shape)} {x.dtype}"
            )

    return check


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode, so that dropout draws no random numbers and training's stream is untouched."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
