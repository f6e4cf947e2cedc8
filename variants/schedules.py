"""The learning-rate schedule after warm-up."""

from minigpt import variant


@variant(
    "wsd-schedule",
    "warmup-stable-decay: lr held, then straight down to min_lr over the last 20% (MiniCPM, Hägele et al. 2024)",
)
def wsd_schedule(cfg):
    return cfg.replace(schedule="wsd", decay_fraction=0.2)
