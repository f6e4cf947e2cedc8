"""How the model knows where a token is."""

from minigpt import variant


@variant("learned-pos", "learned absolute position embeddings (GPT-2) instead of RoPE")
def learned_pos(cfg):
    return cfg.replace(position="learned")


@variant("sinusoidal-pos", "fixed sinusoidal absolute positions (original Transformer) instead of RoPE")
def sinusoidal_pos(cfg):
    return cfg.replace(position="sinusoidal")


@variant("alibi", "ALiBi: linear distance penalties on attention scores instead of RoPE")
def alibi(cfg):
    return cfg.replace(position="alibi")


@variant("nope", "no position encoding at all: only the causal mask orders tokens")
def nope(cfg):
    return cfg.replace(position="none")


@variant("rope+learned", "RoPE and learned absolute embeddings together (the seed's combination)")
def rope_and_learned(cfg):
    return cfg.replace(position="rope+learned")
