"""Which optimizer updates the weights."""

from minigpt import variant


@variant("muon", "Muon on the blocks' weight matrices, AdamW on embeddings, head and gains")
def muon(cfg):
    return cfg.replace(optimizer="muon")


@variant("sgd", "SGD with Nesterov momentum instead of AdamW")
def sgd(cfg):
    return cfg.replace(optimizer="sgd", lr=0.03, min_lr=0.003)
