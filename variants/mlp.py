"""The feed-forward block's activation."""

from minigpt import variant


@variant("relu", "ReLU instead of GELU in the MLP")
def relu(cfg):
    return cfg.replace(mlp="relu")


@variant("relu2", "squared ReLU (Primer) instead of GELU in the MLP")
def relu2(cfg):
    return cfg.replace(mlp="relu2")


@variant("swiglu", "SwiGLU gated MLP, hidden size matched to GELU's parameter count")
def swiglu(cfg):
    return cfg.replace(mlp="swiglu")


@variant("geglu", "GeGLU gated MLP (Shazeer 2020), hidden size matched to GELU's parameter count")
def geglu(cfg):
    return cfg.replace(mlp="geglu")
