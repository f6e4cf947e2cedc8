"""What the residual stream carries between blocks besides each block's output."""

from minigpt import variant


@variant(
    "x0-skips", "the embeddings re-added to every block's input with a learned per-layer weight from 0 (modded-nanogpt)"
)
def x0_skips(cfg):
    return cfg.replace(residual="x0")


@variant(
    "unet-skips",
    "U-net skips: first-half block outputs added to their mirrored second-half inputs, learned weights (modded-nanogpt)",
)
def unet_skips(cfg):
    return cfg.replace(residual="unet")
