"""Registries of named building blocks. A variant selects an implementation by name.

from minigpt.components import position

@position.register("xpos")
class XPos(PositionEncoding): ...
"""

from minigpt.registry import Registry

position: Registry = Registry("position")
attention: Registry = Registry("attention")
norm: Registry = Registry("norm")
mlp: Registry = Registry("mlp")
optimizer: Registry = Registry("optimizer")

# Importing the implementations registers the built-ins.
from minigpt.components import attentions, mlps, norms, optimizers, positions  # noqa: E402, F401

__all__ = ["Registry", "attention", "mlp", "norm", "optimizer", "position"]
