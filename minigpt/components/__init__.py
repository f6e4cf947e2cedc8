"""Registries of named building blocks. A variant selects an implementation by name, through
the Config key of the same name: position, attention, norm, mlp, optimizer (the components),
and block, residual, embedding, head, init, schedule (the skeleton around them).

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
from minigpt.config import Config
from minigpt.registry import Registry

# each registry's kind is the Config key that chooses from it
CHOSEN_BY_CONFIG = (position, attention, norm, mlp, optimizer, block, residual, embedding, head, init, schedule)


def check_names(cfg: Config) -> None:
    """Every component `cfg` names is registered: a ConfigError naming the first that is not."""
    for registry in CHOSEN_BY_CONFIG:
        registry.get(getattr(cfg, registry.kind))


__all__ = [
    "check_names",
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
