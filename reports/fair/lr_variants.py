"""Variants that only move the learning rate (x1/4, x1/2, x2, x4, and AdamW at the baseline's lr):
with --tune lr the multiples should read no different from the baseline."""

from minigpt import variant


@variant("half-lr", "the baseline at half its learning rate (min_lr following)")
def half_lr(cfg):
    return cfg.replace(lr=cfg.lr / 2, min_lr=cfg.min_lr / 2)


@variant("double-lr", "the baseline at twice its learning rate (min_lr following)")
def double_lr(cfg):
    return cfg.replace(lr=cfg.lr * 2, min_lr=cfg.min_lr * 2)


@variant("adamw-base-lr", "AdamW at the baseline's learning rate, not at adamw's 3e-3")
def adamw_base_lr(cfg):
    return cfg.replace(optimizer="adamw")


@variant("quarter-lr", "the baseline at a quarter of its learning rate (min_lr following)")
def quarter_lr(cfg):
    return cfg.replace(lr=cfg.lr / 4, min_lr=cfg.min_lr / 4)


@variant("quadruple-lr", "the baseline at four times its learning rate (min_lr following)")
def quadruple_lr(cfg):
    return cfg.replace(lr=cfg.lr * 4, min_lr=cfg.min_lr * 4)
