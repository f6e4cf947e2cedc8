"""Batch size at a fixed token budget: fewer, larger steps run faster on a CPU but learn less
per token. The peak lr grows with the batch (roughly with its square root)."""

from minigpt import variant


@variant("batch-8", "8 x 64 tokens per step, lr 4e-3")
def batch_8(cfg):
    return cfg.replace(batch_size=8, lr=4e-3, min_lr=4e-4)


@variant("batch-24", "24 x 64 tokens per step, lr 7e-3")
def batch_24(cfg):
    return cfg.replace(batch_size=24, lr=7e-3, min_lr=7e-4)


@variant("batch-32", "32 x 64 tokens per step, lr 8e-3")
def batch_32(cfg):
    return cfg.replace(batch_size=32, lr=8e-3, min_lr=8e-4)


@variant("batch-48", "48 x 64 tokens per step, lr 1e-2")
def batch_48(cfg):
    return cfg.replace(batch_size=48, lr=1e-2, min_lr=1e-3)
