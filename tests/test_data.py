"""The tokenizer, the vocabulary policy, text-file corpora, their cache and `data info` on files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from minigpt import corpora, data
from minigpt.checkpoint import load_checkpoint, save_checkpoint
from minigpt.config import Config
from minigpt.data import UNKNOWN, CharTokenizer, Corpus, DataError, encode_corpus, load_corpus
from minigpt.model import GPT

from .conftest import run_cli

SHAKESPEARE = Path(__file__).resolve().parents[1] / "data" / "input.txt"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MINIGPT_BENCH_CACHE", str(folder))
    return folder


@pytest.fixture
def encoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every text load_corpus encodes."""
    calls: list[str] = []
    real = data.encode_corpus

    def spy(text: str, max_vocab: int | None = None):  # noqa: ANN202
        calls.append(text)
        return real(text, max_vocab)

    monkeypatch.setattr(data, "encode_corpus", spy)
    return calls


def table_row(out: str, label: str) -> str:
    """The number on the row of `data info`'s table that starts with `label` (a regex)."""
    match = re.search(rf"{label}\W+([\d,]+)", out)
    assert match, f"no row {label!r} in {out}"
    return match[1]


def all_ids(corpus: Corpus) -> torch.Tensor:
    return torch.cat([corpus.train, corpus.val])


def test_tokenizer_round_trips_text_and_dict() -> None:
    tokenizer = CharTokenizer.from_text("hello, world\n")
    assert tokenizer.decode(tokenizer.encode("world, hello")) == "world, hello"
    again = CharTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert (again.chars, again.unknown) == (tokenizer.chars, None)
    assert tokenizer.to_dict() == {"chars": tokenizer.chars}  # checkpoints without the policy keep their format


def test_tokenizer_with_unknown_round_trips_and_maps_unseen_characters() -> None:
    tokenizer = CharTokenizer("ab" + UNKNOWN, UNKNOWN)
    again = CharTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert (again.chars, again.unknown) == (tokenizer.chars, UNKNOWN)
    assert again.encode("abz") == [0, 1, 2]
    assert again.decode(again.encode("abz")) == "ab" + UNKNOWN


def test_unknown_character_is_an_error_naming_it() -> None:
    tokenizer = CharTokenizer.from_text("abc")
    with pytest.raises(DataError, match=r"character 'z' not in the vocabulary"):
        tokenizer.encode("abz")
    with pytest.raises(DataError, match=r"characters '\\n', 'é' not in"):
        tokenizer.encode("é\n")


def test_unknown_must_belong_to_the_vocabulary() -> None:
    with pytest.raises(DataError, match="not in the vocabulary"):
        CharTokenizer.from_dict({"chars": "ab", "unknown": UNKNOWN})


def test_encode_corpus_matches_encoding_character_by_character() -> None:
    text = "Zebra 🦓 naïve\tcafé\n" * 3 + "\ud800"  # a lone surrogate, as JSON text may hold
    tokenizer, ids, replaced = encode_corpus(text)
    assert tokenizer.chars == "".join(sorted(set(text)))
    assert ids.tolist() == [tokenizer.index[ch] for ch in text]
    assert ids.dtype == np.uint8 and replaced == 0


def test_large_vocabulary_gets_wide_ids() -> None:
    text = "".join(map(chr, range(0x4E00, 0x4E00 + 300)))
    tokenizer, ids, _ = encode_corpus(text)
    assert tokenizer.vocab_size == 300 and ids.dtype == np.int32 and ids.tolist() == list(range(300))


def test_max_vocab_keeps_the_most_frequent_characters() -> None:
    text = "aaaa bbb cc dz"  # a:4, space:3, b:3, c:2, d:1, z:1
    tokenizer, ids, replaced = encode_corpus(text, max_vocab=4)
    assert tokenizer.chars == " ab" + UNKNOWN and tokenizer.unknown == UNKNOWN
    assert tokenizer.decode(ids.tolist()) == "aaaa bbb " + UNKNOWN * 2 + " " + UNKNOWN * 2
    assert replaced == 4


def test_max_vocab_merges_replacement_characters_already_in_the_text() -> None:
    text = "aaab" + UNKNOWN + "c"
    tokenizer, ids, replaced = encode_corpus(text, max_vocab=2)
    assert tokenizer.chars == "a" + UNKNOWN
    assert tokenizer.decode(ids.tolist()) == "aaa" + UNKNOWN * 3
    assert replaced == 2  # b and c; the text's own U+FFFD was kept


def test_default_policy_keeps_shakespeares_65_characters() -> None:
    corpus = load_corpus(SHAKESPEARE)
    assert corpus.tokenizer.vocab_size == 65 and corpus.tokenizer.unknown is None
    assert load_corpus(SHAKESPEARE, max_vocab=65).tokenizer.chars == corpus.tokenizer.chars
    assert corpus.replaced == 0


@pytest.mark.parametrize("max_vocab", [0, 1, -5])
def test_max_vocab_below_two_is_an_error(max_vocab: int) -> None:
    with pytest.raises(DataError, match="max_vocab must be at least 2"):
        load_corpus(SHAKESPEARE, max_vocab=max_vocab)


def test_checkpoint_keeps_the_unknown_character(tmp_path: Path) -> None:
    tokenizer, _, _ = encode_corpus("aaaabbbcd", max_vocab=3)
    model = GPT(Config(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8))
    save_checkpoint(tmp_path / "ckpt", model, tokenizer, variant="baseline")
    _, loaded, _ = load_checkpoint(tmp_path / "ckpt")
    assert (loaded.chars, loaded.unknown) == ("ab" + UNKNOWN, UNKNOWN)


def test_split_is_ninety_ten(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 100, encoding="utf-8")
    corpus = load_corpus(path)
    assert (len(corpus.train), len(corpus.val), corpus.n_chars) == (900, 100, 1000)
    assert corpus.tokenizer.decode(all_ids(corpus)) == "abcdefghij" * 100


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"caf\xe9 au lait", r"is not UTF-8 text \(byte 3\)"), (b"", "is empty")],
    ids=["latin-1", "empty"],
)
def test_unusable_files_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        load_corpus(path)
    assert "\n" not in str(error.value)


def test_missing_file_and_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_corpus(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is a folder"):
        load_corpus(tmp_path)


def test_corpus_shorter_than_a_block_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("to be or not to be, that is the question", encoding="utf-8")  # 40 chars: val split 4
    corpus = load_corpus(path)
    corpus.check_block_size(3)
    with pytest.raises(DataError, match="too short for block_size 8: its validation split has 4 characters"):
        corpus.check_block_size(8)


def test_second_load_uses_the_cache(tmp_path: Path, cache: Path, encoder_calls: list[str]) -> None:
    path = tmp_path / "t.txt"
    path.write_text("the cache keeps this " * 50, encoding="utf-8")
    first = load_corpus(path)
    second = load_corpus(path)
    assert len(encoder_calls) == 1
    assert torch.equal(all_ids(first), all_ids(second)) and second.tokenizer.chars == first.tokenizer.chars
    assert second.cache_path == first.cache_path and second.cache_path.parent == cache / "corpora"
    meta = json.loads(second.cache_path.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["vocab"] == first.tokenizer.to_dict() and meta["length"] == first.n_chars
    assert np.load(second.cache_path, allow_pickle=False).tolist() == all_ids(first).tolist()


def test_a_changed_file_is_encoded_again(tmp_path: Path, encoder_calls: list[str]) -> None:
    path = tmp_path / "t.txt"
    path.write_text("abcd" * 50, encoding="utf-8")
    before = load_corpus(path)
    path.write_text("abce" * 50, encoding="utf-8")  # same size, different bytes
    after = load_corpus(path)
    assert len(encoder_calls) == 2
    assert after.tokenizer.chars == "abce" and before.tokenizer.chars == "abcd"
    assert after.cache_path != before.cache_path
    load_corpus(path)
    assert len(encoder_calls) == 2


def test_vocabulary_policies_are_cached_apart(tmp_path: Path, encoder_calls: list[str]) -> None:
    path = tmp_path / "t.txt"
    path.write_text("aaaabbbcd" * 20, encoding="utf-8")
    assert load_corpus(path).tokenizer.vocab_size == 4
    assert load_corpus(path, max_vocab=3).tokenizer.chars == "ab" + UNKNOWN
    assert load_corpus(path, max_vocab=3).replaced == 40
    assert len(encoder_calls) == 2


def test_a_damaged_cache_is_rebuilt(tmp_path: Path, encoder_calls: list[str]) -> None:
    path = tmp_path / "t.txt"
    path.write_text("abcd" * 50, encoding="utf-8")
    first = load_corpus(path)
    first.cache_path.with_suffix(".json").write_text("{not json", encoding="utf-8")
    again = load_corpus(path)
    assert len(encoder_calls) == 2 and torch.equal(all_ids(again), all_ids(first))
    first.cache_path.write_bytes(b"garbage")
    assert torch.equal(all_ids(load_corpus(path)), all_ids(first))
    assert len(encoder_calls) == 3


def test_an_unwritable_cache_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("MINIGPT_BENCH_CACHE", str(blocker / "cache"))
    with pytest.raises(DataError, match="cannot write the corpus cache .* set MINIGPT_BENCH_CACHE"):
        load_corpus(SHAKESPEARE)


def test_cache_folder_defaults_to_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MINIGPT_BENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert corpora.cache_dir() == tmp_path / "minigpt-bench"


def test_batches_are_windows_of_the_split() -> None:
    ids = torch.arange(50, dtype=torch.uint8)
    x, y = data.BatchSampler(ids, block_size=8, batch_size=4, seed=0, device=torch.device("cpu"))()
    assert x.shape == (4, 8) and torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)
    whole = list(data.whole_split_batches(ids, 8, 64, torch.device("cpu")))
    assert len(whole) == 1 and whole[0][0].shape == (6, 8) and whole[0][0].flatten().tolist() == list(range(48))


def test_data_info_prints_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 100, encoding="utf-8")
    code, out, err = run_cli(["data", "info", str(path), "--block-size", "16"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert [table_row(out, label) for label in ("characters", "vocabulary", "train split", "validation split")] == [
        "1,000",
        "10",
        "900",
        "100",
    ]
    assert "unknown" not in out
    assert f"cache: {load_corpus(path).cache_path}" in out
    code, out, _ = run_cli(["data", "info", str(path), "--max-vocab", "5"], monkeypatch, capsys)
    assert code == 0 and table_row(out, "vocabulary") == "5" and table_row(out, "mapped to unknown '.'") == "600"


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"\xff\xfeabc", [], "is not UTF-8 text"),
        (b"", [], "is empty"),
        (b"a short text of forty characters, or so", ["--block-size", "8"], "too short for block_size 8"),
        (b"abc" * 100, ["--max-vocab", "1"], "max_vocab must be at least 2"),
    ],
    ids=["non-utf8", "empty", "short", "max-vocab"],
)
def test_data_info_errors_are_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    content: bytes,
    extra: list[str],
    message: str,
) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    code, _, err = run_cli(["data", "info", str(path), *extra], monkeypatch, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
