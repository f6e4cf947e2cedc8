"""Variants that only move the learning rate: with --tune lr they should read no different."""

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
