"""The one base class of every mistake a user can make: the CLI prints its message as one
line on stderr and exits with code 2, with no traceback. And the one fault of the machine a
user is told about by name: a full disk."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class UserError(ValueError):
    pass


class DiskFull(OSError):
    """A write under the run directory that found no space left: it names the file and the
    space left there, not only the library's message (safetensors says "os error 28")."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(errno.ENOSPC, f"no space left on {path} ({free_space_text(Path(path))} free there)")

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` says the disk is full, whichever library raised it."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return os.strerror(errno.ENOSPC) in text or "os error 28" in text


def free_space_text(path: Path) -> str:
    folder = next((p for p in (path, *path.parents) if p.is_dir()), Path("."))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown space"
    for unit in ("B", "kB", "MB", "GB"):
        if free < 1000 or unit == "GB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1000
    return f"{free:.1f} GB"
