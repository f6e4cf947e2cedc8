"""Muon on the hidden matrices (AdamW elsewhere) at several learning rates and batches."""

from minigpt import variant


@variant("muon-lr-5e-3", "Muon, peak lr 5e-3, batch 12")
def muon_5e3(cfg):
    return cfg.replace(optimizer="muon", lr=5e-3, min_lr=5e-4)


@variant("muon-lr-1e-2", "Muon, peak lr 1e-2, batch 12")
def muon_1e2(cfg):
    return cfg.replace(optimizer="muon", lr=1e-2, min_lr=1e-3)


@variant("muon-lr-2e-2", "Muon, peak lr 2e-2, batch 12")
def muon_2e2(cfg):
    return cfg.replace(optimizer="muon", lr=2e-2, min_lr=2e-3)


@variant("muon-batch-32", "Muon, batch 32, peak lr 1.5e-2")
def muon_batch_32(cfg):
    return cfg.replace(optimizer="muon", batch_size=32, lr=1.5e-2, min_lr=1.5e-3)


@variant("muon-batch-32-lr-1e-2", "Muon, batch 32, peak lr 1e-2")
def muon_batch_32_1e2(cfg):
    return cfg.replace(optimizer="muon", batch_size=32, lr=1e-2, min_lr=1e-3)


@variant("muon-batch-32-lr-2e-2", "Muon, batch 32, peak lr 2e-2")
def muon_batch_32_2e2(cfg):
    return cfg.replace(optimizer="muon", batch_size=32, lr=2e-2, min_lr=2e-3)


@variant("muon-batch-32-beta2-0.95", "Muon, batch 32, peak lr 1.5e-2, Adam beta2 0.95")
def muon_batch_32_beta2(cfg):
    return cfg.replace(optimizer="muon", batch_size=32, lr=1.5e-2, min_lr=1.5e-3, beta2=0.95)


@variant("muon-batch-24", "Muon, batch 24, peak lr 1e-2")
def muon_batch_24(cfg):
    return cfg.replace(optimizer="muon", batch_size=24, lr=1e-2, min_lr=1e-3)


@variant("muon-batch-48", "Muon, batch 48, peak lr 1.5e-2")
def muon_batch_48(cfg):
    return cfg.replace(optimizer="muon", batch_size=48, lr=1.5e-2, min_lr=1.5e-3)


@variant("muon-batch-64", "Muon, batch 64, peak lr 2e-2")
def muon_batch_64(cfg):
    return cfg.replace(optimizer="muon", batch_size=64, lr=2e-2, min_lr=2e-3)


@variant("muon-batch-32-warmup-50", "Muon, batch 32, peak lr 1.5e-2, 50 warm-up steps")
def muon_batch_32_warmup(cfg):
    return cfg.replace(optimizer="muon", batch_size=32, lr=1.5e-2, min_lr=1.5e-3, warmup_steps=50)
