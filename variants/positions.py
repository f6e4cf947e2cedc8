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


def rotary(position: str) -> str:
    """The recipe's own rotary scheme, or RoPE where it has none."""
    return position if "rope" in position else "rope"


@variant("partial-rope", "RoPE on the first half of each head's dims only, the rest unrotated (GPT-NeoX, GPT-J)")
def partial_rope(cfg):
    return cfg.replace(position=rotary(cfg.position), rope_fraction=0.5)


@variant("rope-base-1000", "RoPE base 1000 instead of 10000: faster rotations, more of them within a 64-char block")
def rope_base_1000(cfg):
    return cfg.replace(position=rotary(cfg.position), rope_base=1000.0)
