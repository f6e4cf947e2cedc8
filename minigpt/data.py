"""Text in, integer tensors out: the vocabulary, the corpus and its split, batches (the tokenizer
and corpus file reading live in minigpt.text, the corpus sources and cache in minigpt.corpora).

Vocabulary policy: by default every distinct character of the corpus is one token (tiny
Shakespeare keeps its 65). Large, noisy corpora (OCR'd newspapers) carry thousands of rare
characters; `max_vocab=N` keeps the N-1 most frequent characters and maps every other one to a
single unknown character, U+FFFD, which is itself part of the saved vocabulary, so a checkpoint
trained that way reads unseen characters the same way its training text did.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from minigpt import corpora
from minigpt.text import CharTokenizer, DataError

VAL_FRACTION = 0.1  # the seed's 90/10 split: the last tenth of the text is validation
UNKNOWN = "\ufffd"  # Unicode's replacement character stands for every character cut by max_vocab


def check_max_vocab(max_vocab: int | None) -> None:
    if max_vocab is not None and max_vocab < 2:
        raise DataError(f"max_vocab must be at least 2 (one kept character and the unknown one), not {max_vocab}")


def encode_corpus(text: str, max_vocab: int | None = None) -> tuple[CharTokenizer, np.ndarray, int]:
    """The vocabulary of `text` under the max_vocab policy, the text as compact ids, and how
    many characters became the unknown one. One numpy table lookup per character: tens of times
    faster than a Python loop over the text."""
    check_max_vocab(max_vocab)
    # surrogatepass: JSON text may hold lone surrogates, which are still one character each
    codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    counts = np.bincount(codes)
    kept = np.flatnonzero(counts)  # code points in ascending order, as sorted(set(text))
    unknown = None
    if max_vocab is not None and len(kept) > max_vocab:
        candidates = kept[kept != ord(UNKNOWN)]
        by_frequency = candidates[np.lexsort((candidates, -counts[candidates]))]  # ties: lower code point first
        kept = np.sort(np.append(by_frequency[: max_vocab - 1], ord(UNKNOWN)))
        unknown = UNKNOWN
    chars = "".join(map(chr, kept.tolist()))
    tokenizer = CharTokenizer(chars, unknown)
    in_text = kept < len(counts)  # U+FFFD may be absent from the text itself
    table = np.full(len(counts), tokenizer.index[unknown] if unknown else 0, dtype=np.int32)
    table[kept[in_text]] = np.flatnonzero(in_text)  # kept is sorted like chars: position = id
    ids = table[codes].astype(np.uint8 if tokenizer.vocab_size <= 256 else np.int32)
    replaced = len(codes) - int(counts[kept[in_text]].sum())
    return tokenizer, ids, replaced


@dataclass
class Corpus:
    name: str
    tokenizer: CharTokenizer
    train: torch.Tensor  # (N_train,) compact integer ids
    val: torch.Tensor  # (N_val,)
    cache_path: Path | None = None  # where its encoding is cached, when it came through load_corpus
    replaced: int = 0  # characters mapped to the unknown one by the max_vocab policy

    @classmethod
    def from_text(cls, text: str, name: str, max_vocab: int | None = None) -> Corpus:
        if not text:
            raise DataError(f"corpus {name} is empty")
        tokenizer, ids, replaced = encode_corpus(text, max_vocab)
        return cls.from_ids(name, tokenizer, ids, replaced=replaced)

    @classmethod
    def from_ids(
        cls, name: str, tokenizer: CharTokenizer, ids: np.ndarray, cache_path: Path | None = None, replaced: int = 0
    ) -> Corpus:
        if len(ids) == 0:
            raise DataError(f"corpus {name} is empty")
        ids = torch.from_numpy(ids)
        split = int(len(ids) * (1 - VAL_FRACTION))
        return cls(name, tokenizer, ids[:split], ids[split:], cache_path, replaced)

    @property
    def n_chars(self) -> int:
        return len(self.train) + len(self.val)

    @property
    def val_bytes_per_char(self) -> float | None:
        """UTF-8 bytes per character of the validation split (1.0 for ASCII text): bits per byte are
        bits per character over it. None where it is not known: the split holds characters that
        max_vocab mapped to the unknown one, whose original bytes are gone."""
        counts = np.bincount(self.val.numpy(), minlength=self.tokenizer.vocab_size)
        if self.tokenizer.unknown is not None and counts[self.tokenizer.index[self.tokenizer.unknown]]:
            return None
        # surrogatepass: a lone surrogate (from JSON text) is one character of three bytes, as it was counted
        sizes = np.array([len(ch.encode("utf-8", "surrogatepass")) for ch in self.tokenizer.chars])
        return float(counts @ sizes / len(self.val))

    def check_block_size(self, block_size: int) -> None:
        shortest = min(len(self.train), len(self.val))
        if shortest <= block_size:
            raise DataError(
                f"corpus {self.name} is too short for block_size {block_size}: its "
                f"{'validation' if len(self.val) <= len(self.train) else 'training'} split has "
                f"{shortest} characters; use a longer text or a smaller block_size"
            )


def load_corpus(spec: str | Path, max_vocab: int | None = None) -> Corpus:
    """A corpus from a path to any UTF-8 text file, or from `american-stories:YEARS` (for example
    `american-stories:1801-1810` or `american-stories:1801,1805-1807`). The encoding is cached
    under the content's hash (see minigpt.corpora), so loading it again neither re-reads an
    archive nor re-encodes; a changed file has a new hash and is encoded afresh."""
    check_max_vocab(max_vocab)
    source = corpora.resolve(spec)
    cached = corpora.read_cache(source.key, max_vocab)
    if cached is None:
        tokenizer, ids, replaced = encode_corpus(source.read(), max_vocab)
        cached = corpora.write_cache(source.key, max_vocab, tokenizer, ids, replaced)
    return Corpus.from_ids(source.name, cached.tokenizer, cached.ids, cached.path, cached.replaced)


class BatchSampler:
    """Random (x, y) windows from one split, drawn by a generator of their own so that every
    variant with the same seed sees the same batches."""

    def __init__(self, data: torch.Tensor, block_size: int, batch_size: int, seed: int, device: torch.device):
        self.data = data.to(device)
        self.offsets = torch.arange(block_size + 1, device=device)  # (T+1,)
        self.batch_size = batch_size
        self.high = len(data) - block_size
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(self.high, (self.batch_size, 1), generator=self.generator, device=self.data.device)
        window = self.data[starts + self.offsets].long()  # (B, T+1), one gather
        return window[:, :-1], window[:, 1:]


def eval_batches(
    data: torch.Tensor, block_size: int, batch_size: int, count: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed validation batches every evaluation reuses. count=0 means the whole split,
    as consecutive non-overlapping windows (each token predicted once)."""
    if count == 0:
        return list(whole_split_batches(data, block_size, max(batch_size, 64), device))
    sampler = BatchSampler(data, block_size, batch_size, seed=1337, device=device)
    return [sampler() for _ in range(count)]


def whole_split_batches(
    data: torch.Tensor, block_size: int, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    n_windows = (len(data) - 1) // block_size
    usable = data[: n_windows * block_size + 1].to(device).long()
    x = usable[:-1].view(n_windows, block_size)
    y = usable[1:].view(n_windows, block_size)
    for i in range(0, n_windows, batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]
