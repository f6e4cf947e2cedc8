"""Where the norms sit in a block, and whether attention and the MLP run one after the other."""

from minigpt import variant


@variant(
    "post-norm", "norm after each residual sum, x = norm(x + f(x)), as the original Transformer (Vaswani et al. 2017)"
)
def post_norm(cfg):
    return cfg.replace(block="post-norm")


@variant(
    "sandwich-norm", "pre-norm plus a norm on each sublayer's output before it joins the stream (CogView, Gemma 2)"
)
def sandwich_norm(cfg):
    return cfg.replace(block="sandwich")


@variant(
    "parallel-block", "attention and MLP side by side on one shared norm, x + attn(n(x)) + mlp(n(x)) (GPT-J, PaLM)"
)
def parallel_block(cfg):
    return cfg.replace(block="parallel")
