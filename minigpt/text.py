"""Characters and corpus files: the character tokenizer (saved with every checkpoint), the
error a corpus that cannot be used raises, and reading a corpus file. A leaf module: the corpus
sources (minigpt.corpora) and the corpus itself (minigpt.data) both build on it."""

from __future__ import annotations

from pathlib import Path

import torch

from minigpt.errors import UserError


class DataError(UserError):
    """A corpus that cannot be used as asked; the message says which and why."""


class CharTokenizer:
    """Each distinct character is one token; the vocabulary travels with every checkpoint.
    With an `unknown` character (one of `chars`), characters outside the vocabulary encode as it;
    without one they are an error."""

    def __init__(self, chars: str, unknown: str | None = None) -> None:
        if unknown is not None and unknown not in chars:
            raise DataError(f"the unknown character {unknown!r} is not in the vocabulary")
        self.chars = chars
        self.unknown = unknown
        self.index = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        if self.unknown is not None:
            fallback = self.index[self.unknown]
            return [self.index.get(ch, fallback) for ch in text]
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
        return {"chars": self.chars} if self.unknown is None else {"chars": self.chars, "unknown": self.unknown}

    @classmethod
    def from_dict(cls, values: dict[str, str]) -> CharTokenizer:
        return cls(values["chars"], values.get("unknown"))


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"corpus {path} is a folder, not a text file")
    if not path.is_file():
        raise DataError(f"corpus file {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read corpus file {path}: {error.strerror or error}") from None
    if not data:
        raise DataError(f"corpus file {path} is empty")
    return data


def decode_text(data: bytes, path: str | Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"corpus file {path} is not UTF-8 text (byte {error.start})") from None
