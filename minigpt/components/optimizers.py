"""Optimizers, built from a model and the configuration. The trainer sets every group's
learning rate to the schedule's, so one schedule drives them all."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from minigpt.components.attentions import ROLES
from minigpt.components.muon import BatchedMuon, RowBlock
from minigpt.components.registries import optimizer
from minigpt.config import MUON_SPLITS, Config


def fused_supported(device: torch.device) -> bool:
    return device.type in ("cuda", "cpu", "mps")


def decay_groups(params: list[nn.Parameter], cfg: Config) -> list[dict]:
    """Weight decay on matrices (2-D and up) only, never on norms, biases or gains."""
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
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


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): the update is
    the sign of an interpolation between momentum and gradient, so every weight moves by
    exactly lr; its lr is customarily 3-10x below AdamW's and its weight decay as much higher.

        update = sign(beta1 * m + (1 - beta1) * g)
        p <- p * (1 - lr * weight_decay) - lr * update
        m <- beta2 * m + (1 - beta2) * g
    """

    def __init__(
        self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0
    ) -> None:
        if lr <= 0 or weight_decay < 0 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(
                f"Lion needs lr > 0, weight_decay >= 0, betas in [0, 1); got {lr}, {weight_decay}, {betas}"
            )
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            momenta = [self._momentum(p) for p in params]
            beta1, beta2 = group["betas"]
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            updates = torch._foreach_lerp(momenta, grads, 1 - beta1)
            torch._foreach_sign_(updates)
            torch._foreach_add_(params, updates, alpha=-group["lr"])
            torch._foreach_lerp_(momenta, grads, 1 - beta2)
        return loss

    def _momentum(self, param: torch.Tensor) -> torch.Tensor:
        state = self.state[param]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state["exp_avg"]


@optimizer.register("lion")
def build_lion(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    groups = decay_groups([p for p in model.parameters() if p.requires_grad], cfg)
    return Lion([g for g in groups if g["params"]], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


class MergedState(Mapping):
    """The per-parameter state of several optimizers read as one mapping; each optimizer keeps
    its own, so a missing parameter is a KeyError rather than an entry in the wrong one."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    def __getitem__(self, param: torch.Tensor) -> dict:
        for opt in self.optimizers:
            if param in opt.state:
                return opt.state[param]
        raise KeyError(param)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (param for opt in self.optimizers for param in opt.state)

    def __len__(self) -> int:
        return sum(len(opt.state) for opt in self.optimizers)


class OptimizerGroup(torch.optim.Optimizer):
    """Several optimizers stepped as one, so the trainer need not know there are several.

    A real Optimizer: step hooks, LR schedulers and `state_dict` (torch's format, parameters
    numbered across all groups) work as for any other. `param_groups` are the children's own
    group dicts, so a learning rate written into one reaches the optimizer that uses it."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        # torch's constructor adds every group once more, refusing a parameter held twice
        super().__init__([{"params": g["params"]} for opt in optimizers for g in opt.param_groups], {})
        self.optimizers = optimizers
        self._link()

    def _link(self) -> None:
        self.param_groups = [group for opt in self.optimizers for group in opt.param_groups]
        self.state = MergedState(self.optimizers)

    def add_param_group(self, param_group: dict) -> None:
        if hasattr(self, "optimizers"):  # set once torch's constructor has added the children's groups
            raise TypeError("add the group to one of OptimizerGroup.optimizers: the group itself never steps it")
        super().add_param_group(param_group)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "optimizers": self.optimizers}

    def __setstate__(self, state: dict) -> None:
        # load_state_dict ends here with fresh groups and state for all parameters: hand each
        # optimizer its share (through its own __setstate__, which fills in its defaults)
        super().__setstate__(state)
        groups = iter(self.param_groups)
        for opt in self.optimizers:
            own = [next(groups) for _ in opt.param_groups]
            held = {p for group in own for p in group["params"]}
            opt_state = defaultdict(dict, {p: s for p, s in self.state.items() if p in held})
            opt.__setstate__({"state": opt_state, "param_groups": own})
        self._link()


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """2-D weights inside the transformer blocks: what Muon orthogonalizes. Embeddings and the
    LM head stay with AdamW, as Muon's authors recommend."""
    return [p for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2]


def muon_matrices(model: nn.Module, split: str) -> list[list[RowBlock]]:
    """Attention's input projections as the logical matrices Muon orthogonalizes, by role
    whatever the module layout (a fused c_attn or one module per head): `fused` one matrix of
    every query, key and value head; `qkv` the queries, the keys and the values apart; `head`
    one matrix per head and role. Modules that do not declare `projection_heads` keep one
    matrix per parameter."""
    if split not in MUON_SPLITS:
        raise ValueError(f"muon_split must be one of {', '.join(MUON_SPLITS)}, got {split!r}")
    matrices: list[list[RowBlock]] = []
    for module in model.modules():
        declared = getattr(module, "projection_heads", None)
        if declared is None:
            continue
        heads = declared()
        if split == "fused":
            matrices.append([rows for role in ROLES for rows in heads[role]])
        elif split == "qkv":
            matrices += [heads[role] for role in ROLES if heads[role]]
        else:
            matrices += [[rows] for role in ROLES for rows in heads[role]]
    return matrices


@optimizer.register("muon")
def build_muon(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    hidden = hidden_matrices(model)
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in hidden_ids]
    matrices = [m for m in muon_matrices(model, cfg.muon_split) if all(id(p) in hidden_ids for p, _, _ in m)]
    # "match_rms_adamw" scales Muon's update to AdamW's RMS, so one lr serves both; it follows
    # the logical matrix's shape, so a fused c_attn gets no more than its heads apart would.
    muon = BatchedMuon(
        hidden,
        matrices=matrices,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=0.95,
        adjust_lr_fn="match_rms_adamw",
    )
    return OptimizerGroup([muon, adamw(rest, cfg, device)])
