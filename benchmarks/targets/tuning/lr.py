"""Peak learning rate (min_lr = lr / 10) at the default batch of 12 x 64."""

from minigpt import variant


@variant("lr-3e-3", "peak lr 3e-3")
def lr_3e3(cfg):
    return cfg.replace(lr=3e-3, min_lr=3e-4)


@variant("lr-5e-3", "peak lr 5e-3")
def lr_5e3(cfg):
    return cfg.replace(lr=5e-3, min_lr=5e-4)


@variant("lr-8e-3", "peak lr 8e-3")
def lr_8e3(cfg):
    return cfg.replace(lr=8e-3, min_lr=8e-4)


@variant("lr-1.2e-2", "peak lr 1.2e-2")
def lr_12e3(cfg):
    return cfg.replace(lr=1.2e-2, min_lr=1.2e-3)
