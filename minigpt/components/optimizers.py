"""Optimizers, built from a model and the configuration. The trainer sets each group's
learning rate as `schedule(step) * group["lr_scale"]`, so one schedule drives them all."""

from __future__ import annotations

import torch
from torch import nn

from minigpt.components import optimizer
from minigpt.config import Config


def fused_supported(device: torch.device) -> bool:
    return device.type in ("cuda", "cpu", "mps")


def decay_groups(params: list[nn.Parameter], cfg: Config) -> list[dict]:
    """Weight decay on matrices (2-D and up) only, never on norms, biases or gains."""
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
    ]


def adamw(params: list[nn.Parameter], cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    groups = [g for g in decay_groups(params, cfg) if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused_supported(device) or None)


@optimizer.register("adamw")
def build_adamw(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    return adamw([p for p in model.parameters() if p.requires_grad], cfg, device)


@optimizer.register("sgd")
def build_sgd(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    groups = decay_groups([p for p in model.parameters() if p.requires_grad], cfg)
    return torch.optim.SGD([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.beta1, nesterov=True)


class OptimizerGroup(torch.optim.Optimizer):
    """Several optimizers stepped as one, so the trainer need not know there are several."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers
        self.param_groups = [group for opt in optimizers for group in opt.param_groups]
        self.defaults = {}
        self.state = {}

    def step(self, closure: None = None) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for opt, opt_state in zip(self.optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """2-D weights inside the transformer blocks: what Muon orthogonalizes. Embeddings and the
    LM head stay with AdamW, as Muon's authors recommend."""
    return [p for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2]


@optimizer.register("muon")
def build_muon(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    hidden = hidden_matrices(model)
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in hidden_ids]
    # "match_rms_adamw" scales Muon's update to AdamW's RMS, so one lr serves both.
    muon = torch.optim.Muon(
        hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.95, adjust_lr_fn="match_rms_adamw"
    )
    for group in muon.param_groups:
        group["lr_scale"] = 1.0
    return OptimizerGroup([muon, adamw(rest, cfg, device)])
