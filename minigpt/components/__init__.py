"""Registries of named building blocks. A variant selects an implementation by name.

from minigpt.components import position

@position.register("xpos")
class XPos(PositionEncoding): ...
"""

# Importing the implementations registers the built-ins.
from minigpt.components import attentions, mlps, norms, optimizers, positions  # noqa: F401
from minigpt.components.registries import attention, mlp, norm, optimizer, position
from minigpt.registry import Registry

__all__ = ["Registry", "attention", "mlp", "norm", "optimizer", "position"]
