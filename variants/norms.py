"""Which normalization the pre-norm blocks use."""

from minigpt import variant


@variant("rmsnorm", "RMSNorm (no mean subtraction, no bias) instead of LayerNorm")
def rmsnorm(cfg):
    return cfg.replace(norm="rmsnorm")


@variant("dyt", "Dynamic Tanh, weight * tanh(alpha x) + bias, instead of every norm (Zhu et al. 2025)")
def dyt(cfg):
    return cfg.replace(norm="dyt")
