"""Registries of named building blocks. A variant selects an implementation by name.

from minigpt.components import position

@position.register("xpos")
class XPos(PositionEncoding): ...
"""

# Importing the implementations registers the built-ins.
from minigpt.components import (  # noqa: F401
    attentions,
    blocks,
    embeddings,
    heads,
    inits,
    mlps,
    norms,
    optimizers,
    positions,
    residuals,
    schedules,
)
from minigpt.components.registries import (
    attention,
    block,
    embedding,
    head,
    init,
    mlp,
    norm,
    optimizer,
    position,
    residual,
    schedule,
)
from minigpt.registry import Registry

__all__ = [
    "Registry",
    "attention",
    "block",
    "embedding",
    "head",
    "init",
    "mlp",
    "norm",
    "optimizer",
    "position",
    "residual",
    "schedule",
]
