"""glibc's choice between keeping freed memory in the process and giving it back, per process.

`reuse_freed_memory`: keep it. glibc hands every large freed block (above a moving threshold of
a few MiB) back to the kernel at once, so the next array of the same size page-faults its way in
again. Feature extraction allocates and frees the same few arrays per utterance: measured on
2 cores, about 1,000 minor page faults and 60% of an utterance's MFCC time. With both
thresholds raised, freed blocks stay in the heap and are reused (0 faults).

`return_freed_memory`: give it back, for processes that are many and mostly idle between
short-lived buffers (a trainer's loader workers: decoded audio, a batch): their resident memory
stays at what they use, not at the most they ever used (see benchmarks/RESULTS.md, bench_scale).
Where the C library is not glibc both do nothing.
"""
from __future__ import annotations

import ctypes
import functools

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # blocks above this still come from mmap (glibc's largest allowed value)
TRIM_THRESHOLD = 512 * 2**20  # free memory at the heap's top beyond this goes back to the kernel


@functools.lru_cache(maxsize=1)
def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and processes it forks).

    Returns whether the C library accepted both settings. Both are needed: setting
    one alone turns off glibc's own adaptation and is slower than neither.
    """
    return _set_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)


def return_freed_memory(mmap_threshold: int = 256 * 2**10, trim_threshold: int = 2**20) -> bool:
    """Serve blocks above `mmap_threshold` bytes from mmap (unmapped when freed) and give the
    heap's free top back beyond `trim_threshold`, for this process (and those it forks), undoing
    `reuse_freed_memory` where a parent set it. Returns whether the C library accepted both."""
    return _set_thresholds(mmap_threshold, trim_threshold)


def _set_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
