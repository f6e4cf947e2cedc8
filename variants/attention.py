"""How attention is computed: same maths, different kernels."""

from minigpt import variant


@variant("attn-manual", "explicit masked softmax attention instead of torch's fused SDPA kernel")
def attn_manual(cfg):
    return cfg.replace(attention="manual")


@variant("attn-looped", "one module per head in a Python loop (the seed's older design)")
def attn_looped(cfg):
    return cfg.replace(attention="looped")
