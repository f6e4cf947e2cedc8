"""Dropout, which the baseline leaves off: a small model on a 1 MB corpus in a short run
underfits rather than overfits."""

from minigpt import variant


@variant("dropout-0.1", "dropout 0.1 on embeddings, attention and residual branches")
def dropout_01(cfg):
    return cfg.replace(dropout=0.1)


@variant("dropout-0.2", "dropout 0.2 (the seed's setting) on embeddings, attention and residual branches")
def dropout_02(cfg):
    return cfg.replace(dropout=0.2)
