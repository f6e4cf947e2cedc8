"""glibc malloc tuned for training on a CPU: faster, without changing a single number it computes."""

from __future__ import annotations

import ctypes
import functools
import platform

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc maps blocks above this however high it is set (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 1 << 30


def glibc_malloc() -> bool:
    """Whether this process allocates with glibc's malloc, the one keep_freed_memory tunes."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@functools.cache
def keep_freed_memory() -> bool:
    """Keep freed memory in the heap for the next allocation instead of returning it to the kernel.

    glibc serves every block above its mmap threshold (128 KiB, growing to at most 32 MiB) with a
    fresh mapping and unmaps it when freed, so each training step maps its activations and
    gradients anew and takes a page fault for every 4 KiB it touches: thousands of faults per step
    at the default model size, 5-15% of a step on a small CPU. Raising the mmap threshold to its
    maximum and the trim threshold far above a step's memory lets one step reuse what the
    previous one freed. The process's peak memory stays what the step needs. glibc only (a
    no-op elsewhere); returns whether it applied."""
    if not glibc_malloc():
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
