"""FLOPs that count what runs: model FLOPs (the PaLM-style count MFU divides, minigpt.measure.
flops_per_token) beside the total a training step computes, so that `--max-flops` charges each
variant for the work it does.

Per token, forward and backward (the backward counted as twice the forward, the convention the
matmul count uses, so every per-token term is 3x its forward count):

  matmuls     6 N for the N weights used in matrix products (as flops_per_token counts them)
  attention   12 n_embd block_size per layer: q k^T and att v over every key of the block, for
              every layer, windowed or not. Every attention implementation here computes the whole
              T x T square and masks what a query may not see (the causal half, keys outside a
              window), so that is the arithmetic that runs; model FLOPs charge a windowed layer
              only its window's keys.
  norms       3x the forward FLOPs per normalized element (NORM_FORWARD), per element each norm
              module normalizes in a forward pass: LayerNorm, RMSNorm, qk-norm's per-head RMSNorm,
              Dynamic Tanh.

Per optimizer step, over every parameter it updates:

  elementwise  the optimizer's update arithmetic per element (ELEMENTWISE: momentum, second
               moment, bias correction, weight decay, the update itself), plus gradient clipping
               (the global norm and the rescale, 3 per element) when grad_clip is set
  Newton-Schulz  Muon's orthogonalization of each logical matrix (newton_schulz_flops), in the
               matrix shapes and iteration count the optimizer actually uses

Not counted (elementwise work that nearly every variant shares, each a few FLOPs per activation):
softmax, the MLP's activation, residual adds, rotary embeddings, dropout and the loss.

The total per step is the per-token total times the tokens of a step plus the optimizer's step;
the total per token spreads the optimizer's step over the step's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import nn

from minigpt.config import Config

BACKWARD_FACTOR = 3  # forward + backward = 3x forward, as the matmul count has it

# forward FLOPs per normalized element, by module class name:
#   layernorm: mean 1, centre 1, variance 2 (square, sum), scale by the inverse std 1, gain 1, bias 1
#   rmsnorm (and qk-norm's HeadNorm): square 1, sum 1, scale 1, gain 1
#   dyt: alpha x 1, tanh 1, gain 1, bias 1
NORM_FORWARD = {"LayerNorm": 6, "RMSNorm": 4, "HeadNorm": 4, "DynamicTanh": 4}
NORM_BIAS = 1  # a LayerNorm with a bias adds it: one more per element

# optimizer update FLOPs per updated element, by optimizer class name (weight decay apart):
#   AdamW: first moment lerp 3, second moment 4 (square, scale, scale, add), denominator 3
#          (sqrt, bias correction, + eps), update 3 (bias correction, divide, subtract)
#   Muon:  momentum lerp 3, Nesterov lerp 3, the orthogonalized update added 2 (scale, add);
#          its Newton-Schulz iterations are counted apart
#   Lion:  interpolation 3, sign 1, update 2, momentum lerp 3
#   SGD:   momentum 2, Nesterov 2, update 2; its weight decay is added to the gradient (2)
ELEMENTWISE = {"AdamW": 13, "Adam": 13, "Muon": 8, "Lion": 9, "SGD": 6}
NESTEROV = {"Muon": 3, "SGD": 2}  # what the Nesterov look-ahead adds, where a group has it
WEIGHT_DECAY = {"SGD": 2}  # others decay as p *= 1 - lr wd: 1 per element
UNKNOWN_OPTIMIZER = "AdamW"  # an optimizer this module does not know is charged as AdamW
CLIP_PER_ELEMENT = 3  # gradient clipping: square and sum for the global norm, then the rescale


@dataclass(frozen=True)
class FlopCount:
    """One configuration's training FLOPs, by term (per token, except `optimizer`: per step)."""

    model_per_token: int  # flops_per_token: the model FLOPs that MFU reads
    matmuls: int
    attention: int
    norms: int
    optimizer: int  # per optimizer step
    tokens_per_step: int

    @property
    def per_token(self) -> int:
        """What the forward and backward compute per token."""
        return self.matmuls + self.attention + self.norms

    @property
    def total_per_step(self) -> int:
        return self.per_token * self.tokens_per_step + self.optimizer

    @property
    def total_per_token(self) -> float:
        """The total per step spread over the step's tokens."""
        return self.total_per_step / self.tokens_per_step

    def fields(self) -> dict[str, Any]:
        """trial.json's fields for the total count (flops_per_token stays the model count)."""
        return {
            "total_flops_per_token": self.total_per_token,
            "total_flops_per_step": self.total_per_step,
            "optimizer_flops_per_step": self.optimizer,
        }


def matmul_flops(model: nn.Module) -> int:
    """6 N per token for the N weights of matrix products (minigpt.measure.flops_per_token's rule)."""
    lookups = {id(model.wte.weight)} - {id(model.lm_head.weight)}
    lookups |= {id(p) for p in model.position.parameters()}
    return 6 * sum(p.numel() for p in model.parameters() if p.dim() >= 2 and id(p) not in lookups)


def attention_flops(cfg: Config) -> int:
    """Per token: q k^T and att v (2 n_embd FLOPs per key each, forward) over the whole block in
    every layer, 3x for the backward."""
    return BACKWARD_FACTOR * 4 * cfg.n_embd * cfg.block_size * cfg.n_layer


def norm_flops(model: nn.Module, cfg: Config) -> int:
    """Per token: the elements each norm module normalizes in one forward pass (counted on a
    meta-device batch, so a norm applied to q and k heads, or twice a block, counts as it runs)
    times its FLOPs per element, 3x for the backward."""
    elements: dict[str, int] = {}

    def record(module: nn.Module, inputs: tuple, _output: Any) -> None:
        per_element = NORM_FORWARD[type(module).__name__]
        if getattr(module, "bias", None) is not None and type(module).__name__ == "LayerNorm":
            per_element += NORM_BIAS
        elements[id(module)] = elements.get(id(module), 0) + inputs[0].numel() * per_element

    hooks = [m.register_forward_hook(record) for m in model.modules() if type(m).__name__ in NORM_FORWARD]
    try:
        with torch.no_grad():
            model(torch.zeros(1, cfg.block_size, dtype=torch.long, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return BACKWARD_FACTOR * sum(elements.values()) // cfg.block_size


def newton_schulz_flops(rows: int, cols: int, steps: int) -> int:
    """torch.optim.Muon's quintic iteration on one rows x cols matrix, on its wide orientation
    (m = the smaller side, n = the larger): the Frobenius normalization (square, sum, divide:
    3 m n), then per iteration the Gram matrix x x^T (2 m^2 n), b G + c G G (2 m^3 + 3 m^2) and
    a x + (that) x (2 m^2 n + 3 m n)."""
    m, n = min(rows, cols), max(rows, cols)
    return 3 * m * n + steps * (4 * m * m * n + 2 * m**3 + 3 * m * m + 3 * m * n)


def optimizer_flops(optimizer: torch.optim.Optimizer, grad_clip: float = 0.0) -> int:
    """Per step: every child optimizer's elementwise update of the parameters it holds, Muon's
    Newton-Schulz iterations, and gradient clipping over all of them when grad_clip is set."""
    children = getattr(optimizer, "optimizers", None) or [optimizer]
    total = sum(_one_optimizer_flops(child) for child in children)
    if grad_clip:
        total += CLIP_PER_ELEMENT * sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    return total


def _one_optimizer_flops(optimizer: torch.optim.Optimizer) -> int:
    kind = _known_base(optimizer)
    total = 0
    for group in optimizer.param_groups:
        elements = sum(p.numel() for p in group["params"])
        per_element = ELEMENTWISE[kind]
        if kind in NESTEROV and not group.get("nesterov", False):
            per_element -= NESTEROV[kind]
        if group.get("weight_decay"):
            per_element += WEIGHT_DECAY.get(kind, 1)
        total += per_element * elements
        if kind == "Muon":
            shapes = _muon_shapes(optimizer, group["params"])
            total += sum(newton_schulz_flops(*shape, group["ns_steps"]) for shape in shapes)
    return total


def _known_base(optimizer: torch.optim.Optimizer) -> str:
    """The optimizer's class, or the nearest base class, that ELEMENTWISE counts (BatchedMuon: Muon)."""
    for base in type(optimizer).__mro__:
        if base.__name__ in ELEMENTWISE:
            return base.__name__
    return UNKNOWN_OPTIMIZER


def _muon_shapes(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> list[tuple[int, int]]:
    """The shapes of the matrices Muon orthogonalizes: BatchedMuon's logical matrices (its stacks),
    otherwise one per parameter."""
    from minigpt.components.muon import BatchedMuon, plan_stacks

    if isinstance(optimizer, BatchedMuon):
        return [stack.shape for stack in plan_stacks(list(params), optimizer.matrices) for _ in range(stack.count)]
    return [(p.size(0), p[0].numel()) for p in params]


def total_fields(cfg: Config) -> dict[str, Any]:
    """trial.json's total-FLOPs fields for a trained configuration; nulls where the count cannot be
    made (a plugin component that cannot run on the meta device): a trial that trained stays completed."""
    try:
        return count_flops(cfg).fields()
    except Exception:  # noqa: BLE001 - any failure of the count leaves the fields empty, never the trial failed
        return dict.fromkeys(("total_flops_per_token", "total_flops_per_step", "optimizer_flops_per_step"))


@cache
def count_flops(cfg: Config) -> FlopCount:
    """Every term for a configuration, from a model and its optimizer on the meta device (nothing
    is allocated, nothing trains)."""
    from minigpt import components
    from minigpt.measure import flops_per_token
    from minigpt.model import GPT

    device = torch.device("meta")
    with device:
        model = GPT(cfg)
    optimizer = components.optimizer.build(cfg.optimizer, model, cfg, device)
    return FlopCount(
        model_per_token=flops_per_token(model),
        matmuls=matmul_flops(model),
        attention=attention_flops(cfg),
        norms=norm_flops(model, cfg),
        optimizer=optimizer_flops(optimizer, cfg.grad_clip),
        tokens_per_step=cfg.batch_size * cfg.block_size,
    )
