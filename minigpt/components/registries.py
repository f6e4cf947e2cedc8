"""The registries of named building blocks, apart from their implementations so that those can
import them without importing the package that collects them."""

from minigpt.registry import Registry

position: Registry = Registry("position")
attention: Registry = Registry("attention")
norm: Registry = Registry("norm")
mlp: Registry = Registry("mlp")
optimizer: Registry = Registry("optimizer")
block: Registry = Registry("block")
residual: Registry = Registry("residual")
embedding: Registry = Registry("embedding")
head: Registry = Registry("head")
init: Registry = Registry("init")
schedule: Registry = Registry("schedule")
