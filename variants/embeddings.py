"""What the blocks receive from the token embeddings."""

from minigpt import variant


@variant(
    "token-shift",
    "smear: each position adds a learned per-channel share of the previous one's embedding (RWKV, modded-nanogpt)",
)
def token_shift(cfg):
    return cfg.replace(embedding="token-shift")
