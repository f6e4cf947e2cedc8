"""Which optimizer updates the weights. The cpu-fast preset's baseline already uses Muon on
the hidden matrices: under it `adamw` is the contrast, under `--preset reference` `muon` is."""

from minigpt import variant


@variant("muon", "Muon on the blocks' weight matrices, AdamW on embeddings, head and gains")
def muon(cfg):
    return cfg.replace(optimizer="muon")


@variant("adamw", "AdamW on every weight (at lr 3e-3 -> 3e-4, its tuned rate)")
def adamw(cfg):
    return cfg.replace(optimizer="adamw", lr=3e-3, min_lr=3e-4)


@variant("sgd", "SGD with Nesterov momentum instead of AdamW")
def sgd(cfg):
    return cfg.replace(optimizer="sgd", lr=0.03, min_lr=0.003)


@variant("lion", "Lion, sign of interpolated momentum (Chen et al. 2023), at 1/3 AdamW's lr and 3x its weight decay")
def lion(cfg):
    return cfg.replace(optimizer="lion", lr=1e-3, min_lr=1e-4, weight_decay=0.3)


# What Muon orthogonalizes as one matrix of attention's query, key and value projections; the
# same under every attention layout (fused c_attn or one module per head), see muon_split.
@variant("muon-fused", "Muon orthogonalizes every query, key and value head of a layer as one (3C x C) matrix")
def muon_fused(cfg):
    return cfg.replace(optimizer="muon", muon_split="fused")


@variant("muon-qkv", "Muon orthogonalizes the queries, the keys and the values as three matrices (modded-nanogpt)")
def muon_qkv(cfg):
    return cfg.replace(optimizer="muon", muon_split="qkv")


@variant("muon-heads", "Muon orthogonalizes each head's query, key and value projection as its own matrix")
def muon_heads(cfg):
    return cfg.replace(optimizer="muon", muon_split="head")
