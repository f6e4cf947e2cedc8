"""The LM head and its loss."""

from minigpt import variant


@variant("logit-softcap", "logits soft-capped at 15 by 15 * tanh(logits / 15) (Gemma 2, modded-nanogpt, nanochat)")
def logit_softcap(cfg):
    return cfg.replace(softcap=15.0)


@variant(
    "z-loss",
    "PaLM's auxiliary z-loss, 1e-4 * logsumexp(logits)^2, keeps the softmax normalizer near 1 (Chowdhery et al. 2022)",
)
def z_loss(cfg):
    return cfg.replace(z_loss=1e-4)


@variant("tied-head", "the LM head shares the token embedding matrix (GPT-2; Press & Wolf 2017)")
def tied_head(cfg):
    return cfg.replace(tie_weights=True)
