"""How the weights start."""

from minigpt import variant


@variant(
    "zero-init-proj",
    "attention's and the MLP's output projections start at zero, each block as the identity (modded-nanogpt)",
)
def zero_init_proj(cfg):
    return cfg.replace(init="zero-proj")
