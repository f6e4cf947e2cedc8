"""Weight initialization, applied once to the built model: `fn(model, cfg)`."""

from __future__ import annotations

import math

from torch import nn

from minigpt.components.registries import init
from minigpt.config import Config


def normal_linears_and_embeddings(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def output_projections(model: nn.Module) -> list[nn.Parameter]:
    """The weights that write into the residual stream: attention's and the MLP's c_proj."""
    return [p for name, p in model.named_parameters() if name.endswith("c_proj.weight")]


@init.register("gpt2")
def gpt2_init(model: nn.Module, cfg: Config) -> None:
    """GPT-2: N(0, 0.02) matrices and embeddings, zero biases, and the residual projections
    scaled by 1/sqrt(2 * n_layer) so depth keeps the stream's variance."""
    model.apply(normal_linears_and_embeddings)
    for p in output_projections(model):
        nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))


@init.register("zero-proj")
def zero_projections_init(model: nn.Module, cfg: Config) -> None:
    """GPT-2's, then every output projection zeroed (modded-nanogpt, muP "zero readout"):
    each block starts as the identity and grows its contribution from there."""
    gpt2_init(model, cfg)
    for p in output_projections(model):
        nn.init.zeros_(p)
