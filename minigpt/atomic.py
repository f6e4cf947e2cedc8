"""Atomic file writes: write a temporary file beside the target, flush it, rename it over.
A reader (or a process killed mid-write) never sees half a file, and a write that finds the
disk full leaves nothing behind and raises DiskFull naming the target."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from minigpt.errors import DiskFull, is_disk_full

TEMPORARY_SUFFIX = ".tmp"


@contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces `path` in one rename."""
    path = Path(path)
    with naming_a_full_disk(path):  # outside the cleanup: the space it names is what is left
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
        try:  # from here on every way out (an interrupt included) removes the temporary file
            os.close(fd)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would make every result private to its writer
            yield Path(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def remove_temporaries(directory: str | Path) -> list[Path]:
    """Remove the temporary files that writers killed mid-write (SIGKILL, a crash) left in
    `directory`; only a process that knows those writers are dead may call this. Returns them."""
    directory = Path(directory)
    found = sorted(directory.glob(f".*{TEMPORARY_SUFFIX}")) if directory.is_dir() else []
    for leftover in found:
        leftover.unlink(missing_ok=True)
    return found


@contextmanager
def naming_a_full_disk(path: Path) -> Iterator[None]:
    """Any error inside that says the disk is full becomes DiskFull(path)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as error:
        if is_disk_full(error):
            raise DiskFull(path) from error
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
