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
