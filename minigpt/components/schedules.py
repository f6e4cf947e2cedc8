"""Learning-rate schedules: `fn(cfg, step, progress) -> lr`, progress going 0 -> 1 over the
budget after warm-up. Every schedule warms up linearly over warmup_steps first."""

from __future__ import annotations

import math

from minigpt.components.registries import schedule
from minigpt.config import Config


def warming_up(cfg: Config, step: int) -> bool:
    return step < cfg.warmup_steps


def warmup_lr(cfg: Config, step: int) -> float:
    return cfg.lr * (step + 1) / cfg.warmup_steps


@schedule.register("cosine")
def cosine(cfg: Config, step: int, progress: float) -> float:
    """Cosine from lr to min_lr (the baseline)."""
    if warming_up(cfg, step):
        return warmup_lr(cfg, step)
    progress = min(max(progress, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


@schedule.register("linear")
def linear(cfg: Config, step: int, progress: float) -> float:
    """Straight from lr to min_lr."""
    if warming_up(cfg, step):
        return warmup_lr(cfg, step)
    return cfg.lr + min(max(progress, 0.0), 1.0) * (cfg.min_lr - cfg.lr)


@schedule.register("constant")
def constant(cfg: Config, step: int, progress: float) -> float:
    """lr throughout."""
    return warmup_lr(cfg, step) if warming_up(cfg, step) else cfg.lr


@schedule.register("wsd")
def warmup_stable_decay(cfg: Config, step: int, progress: float) -> float:
    """Warmup-stable-decay (MiniCPM, Hägele et al. 2024): lr until the last decay_fraction of
    the budget, then straight down to min_lr."""
    if warming_up(cfg, step):
        return warmup_lr(cfg, step)
    decay_start = 1.0 - cfg.decay_fraction
    if progress <= decay_start:
        return cfg.lr
    decayed = min((progress - decay_start) / cfg.decay_fraction, 1.0)
    return cfg.lr + decayed * (cfg.min_lr - cfg.lr)
