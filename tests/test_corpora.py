"""American Stories corpora from archives built here (never the network), their cache, and
`data info` on them."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from minigpt import corpora, data
from minigpt.data import DataError, load_corpus

from .conftest import run_cli

# Two pages of one year, with the real structure: one JSON file per page, nested folders,
# "full articles" entries with headline, byline and article (plus fields this code ignores).
PAGES_1801 = {
    "mnt/faro_1801/1801-01-02_p1_sn83021183_00206531001_1801010201_0012.json": {
        "lccn": {"title": "The Republican Star"},
        "bboxes": [],
        "full articles": [
            {
                "id": "1",
                "headline": "LATEST NEWS",
                "byline": "By Express",
                "article": "The ship arrived.",
                "object_ids": [],
            },
            {"id": "2", "headline": "", "byline": "", "article": "   ", "object_ids": []},
            {"id": "3", "headline": "PRICES", "byline": "", "article": "Flour, 9 dollars.", "object_ids": []},
        ],
    },
    "mnt/faro_1801/1801-01-02_p2_sn83021183_00206531001_1801010201_0013.json": {
        "full articles": [{"headline": "POETRY", "byline": "A Lady", "article": "O Muse, sing!"}]
    },
    "mnt/faro_1801/README.txt": b"not a page",
    "mnt/faro_1801/metadata.json": {"scans": 2},  # JSON without "full articles" adds nothing
}
PAGES_1802 = {"1802-05-01_p1_sn1.json": {"full articles": [{"headline": "H", "byline": "B", "article": "Peace."}]}}
TEXT_1801_1802 = "The ship arrived.\n\nFlour, 9 dollars.\n\nO Muse, sing!\n\nPeace."


def write_archive(path: Path, members: dict[str, Any]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            payload = content if isinstance(content, bytes) else json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MINIGPT_BENCH_CACHE", str(folder))
    return folder


@dataclass
class Archives:
    paths: dict[int, Path]
    downloads: list[int] = field(default_factory=list)

    def download(self, year: int) -> Path:
        self.downloads.append(year)
        return self.paths[year]


@pytest.fixture
def archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Archives:
    """faro_1801 and faro_1802 on disk, handed out in place of downloads, which are recorded."""
    built = Archives(
        {
            1801: write_archive(tmp_path / "faro_1801.tar.gz", PAGES_1801),
            1802: write_archive(tmp_path / "faro_1802.tar.gz", PAGES_1802),
        }
    )
    monkeypatch.setattr(corpora, "download_archive", built.download)
    return built


def text_of(corpus: data.Corpus) -> str:
    return corpus.tokenizer.decode(torch.cat([corpus.train, corpus.val]))


@pytest.mark.parametrize(
    ("spec", "years"),
    [
        ("1801", [1801]),
        ("1801-1803", [1801, 1802, 1803]),
        (" 1805 , 1801-1802,1802 ", [1801, 1802, 1805]),
        ("1774,1963", [1774, 1963]),
    ],
)
def test_year_specs(spec: str, years: list[int]) -> None:
    assert corpora.parse_years(spec) == years


def test_years_print_as_ranges() -> None:
    assert corpora.format_years([1805, 1801, 1802, 1803]) == "1801-1803,1805"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("american-stories:", "bad American Stories years ''"),
        ("american-stories", "bad American Stories years ''"),
        ("american-stories:18O1", "bad American Stories years '18O1'"),
        ("american-stories:1801-", "bad American Stories years"),
        ("american-stories:1801;1802", "bad American Stories years"),
        ("american-stories:1810-1801", "year range '1810-1801': it ends before it starts"),
        ("american-stories:1700", "no archive for 1700: it covers 1774 and 1798-1963"),
        ("american-stories:1790-1799,1964", "no archive for 1790-1797,1964"),
    ],
)
def test_bad_year_specs_are_one_line_errors(spec: str, message: str, archives: Archives) -> None:
    with pytest.raises(DataError, match=message) as error:
        load_corpus(spec)
    assert "\n" not in str(error.value)
    assert archives.downloads == []


def test_corpus_from_downloaded_archives(archives: Archives) -> None:
    corpus = load_corpus("american-stories:1802,1801")
    assert corpus.name == "american-stories:1801-1802"
    assert text_of(corpus) == TEXT_1801_1802  # article texts only, in year then archive order
    assert archives.downloads == [1801, 1802]
    assert corpus.tokenizer.chars == "".join(sorted(set(TEXT_1801_1802)))


def test_second_load_neither_downloads_nor_encodes(archives: Archives, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_corpus("american-stories:1801-1802")
    encodings: list[str] = []
    monkeypatch.setattr(data, "encode_corpus", lambda *args: encodings.append(args[0]))
    again = load_corpus("american-stories:1801,1802")  # the same years, written differently
    assert archives.downloads == [1801, 1802] and encodings == []
    assert text_of(again) == TEXT_1801_1802 and again.cache_path == first.cache_path


def test_max_vocab_on_american_stories(archives: Archives) -> None:
    corpus = load_corpus("american-stories:1801", max_vocab=8)
    assert corpus.tokenizer.vocab_size == 8 and corpus.tokenizer.unknown == data.UNKNOWN
    assert corpus.replaced > 0 and text_of(corpus).count(data.UNKNOWN) == corpus.replaced


def truncated_archive(path: Path) -> None:
    valid = write_archive(path.with_suffix(".valid"), {f"p{i}.json": {"full articles": []} for i in range(50)})
    path.write_bytes(valid.read_bytes()[:200])


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"<html>rate limited</html>"),
        truncated_archive,
        lambda path: write_archive(path, {"p1.json": b"{not json"}),
        lambda path: write_archive(path, {"p1.json": b'{"full articles": [{"article": "caf\xe9"}]}'}),
    ],
    ids=["not-an-archive", "truncated", "bad-json", "not-utf8-json"],
)
def test_bad_archive_is_a_one_line_error(archives: Archives, damage: Any) -> None:
    damage(archives.paths[1801])
    with pytest.raises(DataError, match=r"archive for 1801 \(.*faro_1801.tar.gz\) is unreadable") as error:
        load_corpus("american-stories:1801")
    assert "\n" not in str(error.value)


def test_archive_without_articles_is_an_error(archives: Archives) -> None:
    write_archive(
        archives.paths[1801], {"p1.json": {"full articles": []}, "p2.json": {"full articles": [{"article": ""}]}}
    )
    with pytest.raises(DataError, match="American Stories 1801 holds no article text"):
        load_corpus("american-stories:1801")


class FakeHub:
    """Stands in for huggingface_hub.hf_hub_download: records its calls, returns or raises."""

    def __init__(self, result: Path | Exception) -> None:
        self.result = result
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, kwargs))
        if isinstance(self.result, Exception):
            raise self.result
        return str(self.result)


def test_download_asks_the_hub_for_the_pinned_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = pytest.importorskip("huggingface_hub")
    fake = FakeHub(write_archive(tmp_path / "blob", PAGES_1802))
    monkeypatch.setattr(hub, "hf_hub_download", fake)
    assert text_of(load_corpus("american-stories:1802")) == "Peace."
    (args, kwargs), *_ = fake.calls
    assert args == ("dell-research-harvard/AmericanStories", "faro_1802.tar.gz")
    assert kwargs == {"repo_type": "dataset", "revision": corpora.AMERICAN_STORIES_REVISION}


def test_the_hugging_face_cache_serves_archives_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants

    hf_cache = tmp_path / "hf"
    snapshot = hf_cache / "datasets--dell-research-harvard--AmericanStories" / "snapshots"
    snapshot = snapshot / corpora.AMERICAN_STORIES_REVISION
    snapshot.mkdir(parents=True)
    write_archive(snapshot / "faro_1802.tar.gz", PAGES_1802)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert text_of(load_corpus("american-stories:1802")) == "Peace."
    with pytest.raises(DataError, match=r"cannot download faro_1801.tar.gz .* not in the Hugging Face cache"):
        load_corpus("american-stories:1801")


def test_network_failures_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(hub, "hf_hub_download", FakeHub(LocalEntryNotFoundError("Connection error.\nDetails...")))
    with pytest.raises(DataError, match="cannot download faro_1801.tar.gz of .* not in the Hugging Face cache"):
        load_corpus("american-stories:1801")
    monkeypatch.setattr(hub, "hf_hub_download", FakeHub(ConnectionResetError(104, "Connection reset by peer")))
    with pytest.raises(
        DataError, match=r"downloading faro_1801.tar.gz of .* failed: \[Errno 104\] Connection reset"
    ) as error:
        load_corpus("american-stories:1801")
    assert "\n" not in str(error.value)


def test_a_bug_is_not_disguised_as_a_network_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "hf_hub_download", FakeHub(KeyError("oops")))
    with pytest.raises(KeyError):
        load_corpus("american-stories:1801")


def test_missing_huggingface_hub_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(DataError, match=r"needs huggingface_hub: pip install 'minigpt-bench\[hf\]'"):
        load_corpus("american-stories:1801")


def test_data_info_on_american_stories(
    archives: Archives, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_cli(["data", "info", "american-stories:1801-1802", "--block-size", "4"], monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert "corpus: american-stories:1801-1802\n" in out and f"{len(TEXT_1801_1802):,}" in out
    assert f"cache: {load_corpus('american-stories:1801-1802').cache_path}" in out


@pytest.mark.parametrize(
    ("spec", "message"),
    [("american-stories:1801", "is unreadable"), ("american-stories:1801-17", "bad American Stories years")],
    ids=["bad-archive", "bad-years"],
)
def test_data_info_errors_are_one_line_and_exit_2(
    archives: Archives,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    spec: str,
    message: str,
) -> None:
    archives.paths[1801].write_bytes(b"not gzip")
    code, _, err = run_cli(["data", "info", spec], monkeypatch, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
