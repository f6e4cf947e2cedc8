"""How many attention heads share the width (the baseline has 4)."""

from minigpt import variant


@variant("heads-1", "one attention head as wide as the model")
def heads_1(cfg):
    return cfg.replace(n_head=1)


@variant("heads-2", "two attention heads")
def heads_2(cfg):
    return cfg.replace(n_head=2)


@variant("heads-8", "eight narrower attention heads")
def heads_8(cfg):
    return cfg.replace(n_head=8)
