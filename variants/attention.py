"""How attention is computed: same maths, different kernels."""

from minigpt import variant


@variant("attn-manual", "explicit masked softmax attention instead of torch's fused SDPA kernel")
def attn_manual(cfg):
    return cfg.replace(attention="manual")


@variant("attn-looped", "one module per head in a Python loop (the seed's older design)")
def attn_looped(cfg):
    return cfg.replace(attention="looped")


@variant("qk-norm", "RMS-normalize each head's queries and keys before attending (modded-nanogpt, nanochat, OLMo 2)")
def qk_norm(cfg):
    return cfg.replace(qk_norm=True)


@variant("gqa", "grouped-query attention: half as many key/value heads, each shared by two query heads (Llama 2)")
def gqa(cfg):
    return cfg.replace(n_kv_head=max(1, cfg.n_head // 2))


@variant("mqa", "multi-query attention: one key/value head shared by every query head (Shazeer 2019)")
def mqa(cfg):
    return cfg.replace(n_kv_head=1)


@variant(
    "sliding-window",
    "every other layer attends to the last block_size/4 tokens only, the last layer to all (Gemma 2, nanochat)",
)
def sliding_window(cfg):
    return cfg.replace(window=max(1, cfg.block_size // 4), window_pattern="SL")
