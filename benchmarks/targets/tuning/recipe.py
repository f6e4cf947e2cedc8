"""Single changes to the recipe at lr 5e-3, and the reference recipe itself."""

from minigpt import variant
from minigpt.config import PRESETS


@variant("reference", "the reference CPU recipe: learned positions, tied head, lr 1e-3")
def reference(cfg):
    return cfg.replace(**PRESETS["reference"].overrides)


@variant("reference-lr-3e-3", "the reference recipe with lr 3e-3 -> 3e-4")
def reference_lr(cfg):
    return cfg.replace(**PRESETS["reference"].overrides).replace(lr=3e-3, min_lr=3e-4)


@variant("tied", "lr 5e-3, LM head tied to the token embedding")
def tied(cfg):
    return cfg.replace(lr=5e-3, min_lr=5e-4, tie_weights=True)


@variant("no-decay", "lr 5e-3, no weight decay")
def no_decay(cfg):
    return cfg.replace(lr=5e-3, min_lr=5e-4, weight_decay=0.0)


@variant("warmup-30", "lr 5e-3, 30 warm-up steps")
def warmup_30(cfg):
    return cfg.replace(lr=5e-3, min_lr=5e-4, warmup_steps=30)


@variant("decay-to-0", "lr 5e-3 decayed to 0")
def decay_to_0(cfg):
    return cfg.replace(lr=5e-3, min_lr=0.0)


@variant("beta2-0.95", "lr 5e-3, Adam beta2 0.95")
def beta2_095(cfg):
    return cfg.replace(lr=5e-3, min_lr=5e-4, beta2=0.95)
