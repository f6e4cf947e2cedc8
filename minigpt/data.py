"""Characters in, integer tensors out: the tokenizer, the corpus and its split, batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.errors import UserError

VAL_FRACTION = 0.1  # the seed's 90/10 split: the last tenth of the text is validation


class DataError(UserError):
    """A corpus that cannot be used as asked; the message says which and why."""


class CharTokenizer:
    """Each distinct character is one token; the vocabulary travels with every checkpoint."""

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.index = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[ch] for ch in text]
        except KeyError:
            unknown = sorted({ch for ch in text if ch not in self.index})
            raise DataError(
                f"character{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} not in the vocabulary"
            ) from None

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        return "".join(self.chars[i] for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids))

    def to_dict(self) -> dict[str, str]:
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, values: dict[str, str]) -> CharTokenizer:
        return cls(values["chars"])


def compact_dtype(vocab_size: int) -> torch.dtype:
    return torch.uint8 if vocab_size <= 256 else torch.int32


@dataclass
class Corpus:
    name: str
    tokenizer: CharTokenizer
    train: torch.Tensor  # (N_train,) compact integer ids
    val: torch.Tensor  # (N_val,)

    @classmethod
    def from_text(cls, text: str, name: str) -> Corpus:
        if not text:
            raise DataError(f"corpus {name} is empty")
        tokenizer = CharTokenizer.from_text(text)
        ids = torch.tensor(tokenizer.encode(text), dtype=compact_dtype(tokenizer.vocab_size))
        split = int(len(ids) * (1 - VAL_FRACTION))
        return cls(name, tokenizer, ids[:split], ids[split:])

    def check_block_size(self, block_size: int) -> None:
        shortest = min(len(self.train), len(self.val))
        if shortest <= block_size:
            raise DataError(
                f"corpus {self.name} is too short for block_size {block_size}: its "
                f"{'validation' if len(self.val) <= len(self.train) else 'training'} split has "
                f"{shortest} characters; use a longer text or a smaller block_size"
            )


def read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"corpus file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"corpus file {path} is not UTF-8 text (byte {error.start})") from None
    if not text:
        raise DataError(f"corpus file {path} is empty")
    return text


def load_corpus(spec: str | Path) -> Corpus:
    """A corpus from a path to any UTF-8 text file."""
    return Corpus.from_text(read_text(spec), str(spec))


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
