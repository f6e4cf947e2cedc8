"""Depth against width at about the same FLOPs per token (block 64), lr 5e-3."""

from minigpt import variant


@variant("deep-6x104", "6 blocks of width 104 (4 heads of 26)")
def deep(cfg):
    return cfg.replace(n_layer=6, n_embd=104, lr=5e-3, min_lr=5e-4)


@variant("shallow-3x144", "3 blocks of width 144 (4 heads of 36)")
def shallow(cfg):
    return cfg.replace(n_layer=3, n_embd=144, lr=5e-3, min_lr=5e-4)


@variant("arch-5e-3", "rmsnorm + swiglu + relu-free recipe at lr 5e-3")
def arch(cfg):
    return cfg.replace(norm="rmsnorm", mlp="swiglu", lr=5e-3, min_lr=5e-4)
