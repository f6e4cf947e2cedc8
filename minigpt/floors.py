"""Floors: the validation loss of trivial predictors of a run's own corpus, so a report can say
whether its models learned more than character frequencies.

Both are counted on the training split and scored on the validation split, in nats per
character, with add-one (Laplace) smoothing so that a character or pair never seen in training
still has a finite cost:

  unigram  p(c) = (n(c) + 1) / (N + V)
  bigram   p(b | a) = (n(a b) + 1) / (n(a .) + V)

where V is the vocabulary size, n(a .) counts the training pairs that start with a (the last
training character starts none). A model that is not clearly below the bigram has learned
little beyond which character tends to follow which (CLEAR_FRACTION says how far below is
clearly).

A run records them in sweep.json's `floors` where the runner does so; a report of an older run
computes them from the corpus when it can still load the same one (same digest).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# "Clearly past the bigram": at least this fraction of the bigram's own gain over the unigram
# below the bigram. One character of context (unigram -> bigram) is the first and largest thing a
# character model learns; a model that has gained less than a quarter as much again from its whole
# context has barely left pair statistics behind. On tiny Shakespeare (unigram 3.35, bigram 2.48
# nats) that is about 0.22 nats, several times the seed-to-seed spread of a trial's best loss, so
# the warning is about the budget, never about noise.
CLEAR_FRACTION = 0.25
SMOOTHING = "add-one (Laplace)"


def unigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Mean cross-entropy (nats) on `val` of add-one smoothed character frequencies of `train`."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64)
    log_p = np.log(counts + 1) - math.log(len(train) + vocab_size)
    return float(-log_p[val].mean())


def bigram_loss(train: np.ndarray, val: np.ndarray, vocab_size: int) -> float:
    """Mean cross-entropy (nats) on val[1:] given val[:-1] of add-one smoothed pair counts of `train`.
    Pairs are coded a * V + b and counted with np.unique, so a large vocabulary costs no V x V table."""
    train, val = train.astype(np.int64), val.astype(np.int64)
    pairs, counts = np.unique(train[:-1] * vocab_size + train[1:], return_counts=True)
    starts = np.bincount(train[:-1], minlength=vocab_size)
    wanted = val[:-1] * vocab_size + val[1:]
    where = np.clip(np.searchsorted(pairs, wanted), 0, len(pairs) - 1)
    seen = np.where(pairs[where] == wanted, counts[where], 0)
    log_p = np.log(seen + 1.0) - np.log(starts[val[:-1]] + float(vocab_size))
    return float(-log_p.mean())


def corpus_floors(corpus: Any) -> dict[str, Any]:
    """sweep.json's `floors` for a minigpt.data.Corpus: unigram and bigram nats per character."""
    train, val = corpus.train.numpy(), corpus.val.numpy()
    vocab = corpus.tokenizer.vocab_size
    return {
        "unigram": unigram_loss(train, val, vocab),
        "bigram": bigram_loss(train, val, vocab),
        "smoothing": SMOOTHING,
    }


def clear_margin(floors: dict[str, Any]) -> float:
    """How far below the bigram a loss must be to have left the floors clearly behind (nats)."""
    return CLEAR_FRACTION * max(0.0, floors["unigram"] - floors["bigram"])


def clearly_past(loss: float, floors: dict[str, Any]) -> bool:
    return loss <= floors["bigram"] - clear_margin(floors)


def run_floors(sweep: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(floors, None) from sweep.json, or computed from the run's corpus where it still loads with the
    digest the run recorded; (None, why) where neither is possible."""
    if sweep.get("floors"):
        return sweep["floors"], None
    data = sweep.get("data")
    if not data:
        return None, "sweep.json does not name the corpus"
    from minigpt.data import load_corpus
    from minigpt.errors import UserError
    from minigpt.sweep import corpus_digest

    try:
        corpus = load_corpus(data, sweep.get("max_vocab"))
    except (UserError, OSError, ValueError) as error:
        return None, f"the corpus {data} could not be loaded here ({error})"
    recorded = (sweep.get("identity") or {}).get("corpus")
    if recorded and corpus_digest(corpus) != recorded:
        return None, f"the corpus at {data} is no longer the one the run trained on"
    return corpus_floors(corpus), None
