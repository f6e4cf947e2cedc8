"""Where corpus text comes from, and the on-disk cache of encoded corpora.

A corpus spec is a path to any UTF-8 text file, or `american-stories:YEARS`: a subset of the
American Stories dataset (articles from historical U.S. newspapers, Chronicling America). Its
Hugging Face loading script no longer runs with current `datasets` releases, so the per-year
archives `faro_YEAR.tar.gz` are downloaded with huggingface_hub (the optional `[hf]` extra) at a
pinned revision, which honours the Hugging Face cache and HF_HUB_OFFLINE. Each archive holds one
JSON file per newspaper page; the article texts of its "full articles" are joined, one blank
line between articles.

Encoded corpora are cached as `KEY.npy` (the ids) and `KEY.json` (vocabulary and counts) in
$MINIGPT_BENCH_CACHE, else $XDG_CACHE_HOME/minigpt-bench, else ~/.cache/minigpt-bench. KEY
hashes the content: a file's bytes, or the pinned revision and years of American Stories (a
commit names its files' bytes for good), with the vocabulary policy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from minigpt import atomic
from minigpt.text import CharTokenizer, DataError, decode_text, read_bytes

SPEC_PREFIX = "american-stories:"
AMERICAN_STORIES_REPO = "dell-research-harvard/AmericanStories"
# The commit "Remaining files added", the first with every year's archive. Pinning it keeps a
# corpus reproducible when the dataset is amended.
AMERICAN_STORIES_REVISION = "bcce1d08e62606c13e01a7b6e801b8de2c1a8632"
AMERICAN_STORIES_YEARS = frozenset([1774, *range(1798, 1964)])
ARTICLE_SEPARATOR = "\n\n"
TINY_SHAKESPEARE = "tiny-shakespeare"  # the corpus installed with the package, by name
CACHE_FORMAT = 1  # bump when the cached encoding changes meaning
# Failures of the HTTP stacks huggingface_hub has used; most of them are OSErrors anyway.
NETWORK_ERROR_PACKAGES = ("huggingface_hub", "httpx", "httpx2", "requests", "urllib3")


@dataclass(frozen=True)
class Source:
    name: str  # as the user wrote it, normalized for American Stories
    key: str  # content identity: equal keys mean equal text
    read: Callable[[], str]  # the text, read only when the cache does not have it


def resolve(spec: str | Path) -> Source:
    if spec == TINY_SHAKESPEARE:
        from minigpt import bundled

        return replace(file_source(bundled.TINY_SHAKESPEARE), name=TINY_SHAKESPEARE)
    if isinstance(spec, str) and spec.split(":", 1)[0] == SPEC_PREFIX[:-1]:
        return american_stories_source(parse_years(spec[len(SPEC_PREFIX) :]))
    return file_source(Path(spec))


def file_source(path: Path) -> Source:
    data = read_bytes(path)
    return Source(str(path), "file:" + hashlib.sha256(data).hexdigest(), lambda: decode_text(data, path))


def american_stories_source(years: list[int]) -> Source:
    span = format_years(years)
    key = f"american-stories:{AMERICAN_STORIES_REVISION}:{span}:{ARTICLE_SEPARATOR!r}"
    return Source(SPEC_PREFIX + span, key, lambda: american_stories_text(years))


def parse_years(text: str) -> list[int]:
    """'1801-1803,1805' -> [1801, 1802, 1803, 1805]: sorted, without repeats."""
    example = "e.g. american-stories:1801-1810 or american-stories:1801,1805-1807"
    years: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d{4})\s*(?:-\s*(\d{4})\s*)?", part)
        if match is None:
            raise DataError(f"bad American Stories years {text!r}: use years and ranges, {example}")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise DataError(f"bad American Stories year range {part.strip()!r}: it ends before it starts")
        years.update(range(first, last + 1))
    missing = sorted(years - AMERICAN_STORIES_YEARS)
    if missing:
        raise DataError(f"American Stories has no archive for {format_years(missing)}: it covers 1774 and 1798-1963")
    return sorted(years)


def format_years(years: list[int]) -> str:
    """[1801, 1802, 1803, 1805] -> '1801-1803,1805'."""
    runs: list[list[int]] = []
    for year in sorted(years):
        if runs and year == runs[-1][1] + 1:
            runs[-1][1] = year
        else:
            runs.append([year, year])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in runs)


def american_stories_text(years: list[int]) -> str:
    articles = [article for year in years for article in archive_articles(download_archive(year), year)]
    if not articles:
        raise DataError(f"American Stories {format_years(years)} holds no article text")
    return ARTICLE_SEPARATOR.join(articles)


def download_archive(year: int) -> Path:
    """The local path of faro_YEAR.tar.gz, downloaded into the Hugging Face cache if not there."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DataError("American Stories needs huggingface_hub: pip install 'minigpt-bench[hf]'") from None
    from huggingface_hub.errors import LocalEntryNotFoundError

    filename = f"faro_{year}.tar.gz"
    try:
        with quiet_retries():
            return Path(
                hf_hub_download(
                    AMERICAN_STORIES_REPO, filename, repo_type="dataset", revision=AMERICAN_STORIES_REVISION
                )
            )
    except LocalEntryNotFoundError:
        raise DataError(
            f"cannot download {filename} of {AMERICAN_STORIES_REPO} and it is not in the Hugging Face cache "
            "(no network, or HF_HUB_OFFLINE is set)"
        ) from None
    except Exception as error:
        if not isinstance(error, OSError) and type(error).__module__.split(".")[0] not in NETWORK_ERROR_PACKAGES:
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"downloading {filename} of {AMERICAN_STORIES_REPO} failed: {reason}") from None


@contextmanager
def quiet_retries() -> Iterator[None]:
    """huggingface_hub logs a warning line per retry; a failure here should end in one line."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def archive_articles(path: Path, year: int) -> list[str]:
    """The non-empty article texts of every `*.json` member's "full articles", in archive order."""
    articles: list[str] = []
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if not (member.isfile() and member.name.endswith(".json")):
                    continue
                page = json.load(archive.extractfile(member))
                entries = page.get("full articles") if isinstance(page, dict) else None
                for entry in entries if isinstance(entries, list) else []:
                    text = entry.get("article") if isinstance(entry, dict) else None
                    if isinstance(text, str) and text.strip():
                        articles.append(text)
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as error:
        # ValueError covers malformed JSON and text that is not UTF-8
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(
            f"the American Stories archive for {year} ({path}) is unreadable: {reason}; delete it to download it again"
        ) from None
    return articles


def cache_dir() -> Path:
    if os.environ.get("MINIGPT_BENCH_CACHE"):
        return Path(os.environ["MINIGPT_BENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minigpt-bench"


@dataclass(frozen=True)
class CachedEncoding:
    tokenizer: CharTokenizer
    ids: np.ndarray
    replaced: int
    path: Path  # the .npy file


def cache_paths(key: str, max_vocab: int | None) -> tuple[Path, Path]:
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{key}\0{max_vocab}".encode()).hexdigest()[:32]
    base = cache_dir() / "corpora" / digest
    return base.with_suffix(".npy"), base.with_suffix(".json")


def read_cache(key: str, max_vocab: int | None) -> CachedEncoding | None:
    """The cached encoding, or None when there is none or it does not hold together (then it is
    simply rebuilt)."""
    ids_path, meta_path = cache_paths(key, max_vocab)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        ids = np.load(ids_path, allow_pickle=False)
        tokenizer = CharTokenizer.from_dict(meta["vocab"])
        if meta["key"] != key or ids.shape != (meta["length"],):
            return None
        return CachedEncoding(tokenizer, ids, int(meta["replaced"]), ids_path)
    except (OSError, ValueError, KeyError, TypeError):  # ValueError: bad JSON, bad .npy, bad vocabulary
        return None


def write_cache(
    key: str, max_vocab: int | None, tokenizer: CharTokenizer, ids: np.ndarray, replaced: int
) -> CachedEncoding:
    """Write the ids, then the JSON that vouches for them: a reader finds either both or a miss."""
    ids_path, meta_path = cache_paths(key, max_vocab)
    meta = {"key": key, "max_vocab": max_vocab, "length": len(ids), "replaced": replaced, "vocab": tokenizer.to_dict()}
    try:
        with atomic.atomic_target(ids_path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, ids, allow_pickle=False)
        atomic.write_json(meta_path, meta)
    except OSError as error:
        raise DataError(
            f"cannot write the corpus cache in {ids_path.parent}: {error.strerror or error}; "
            "set MINIGPT_BENCH_CACHE to a writable folder"
        ) from None
    return CachedEncoding(tokenizer, ids, replaced, ids_path)
