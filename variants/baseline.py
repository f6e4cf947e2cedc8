"""The baseline: the seed's model (pre-norm, RoPE, batched SDPA attention, GELU MLP,
LayerNorm) with the default training recipe. Every other variant is a change to it."""

from minigpt import variant


@variant("baseline", "the core model and recipe, unchanged")
def baseline(cfg):
    return cfg
