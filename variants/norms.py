"""Which normalization the pre-norm blocks use."""

from minigpt import variant


@variant("rmsnorm", "RMSNorm (no mean subtraction, no bias) instead of LayerNorm")
def rmsnorm(cfg):
    return cfg.replace(norm="rmsnorm")
