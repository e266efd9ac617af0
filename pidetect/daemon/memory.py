"""Keep the daemon's resident memory flat over days: frame-sized buffers go back to the kernel when freed.

Why: glibc serves allocations above its mmap threshold (128 KiB at start) with their own mappings,
but raises that threshold to the size of any such block once it is freed (up to 32 MiB). After the
first freed frame (a 1280x720 BGR frame is 2.6 MiB), frames come from the heap arenas of whichever
thread allocates them, and an arena that once held one or two keeps them: the 10-minute soak with the
motion gate and MQTT showed single steps of 2.7-3.9 MiB at random minutes (then flat), 3.6 and 3.9 MiB
"growth" in two runs; with the threshold fixed at 1 MiB the same soak stayed within 0.7 MiB. Fixing
it (mallopt turns the adjustment off) costs a fresh mapping per large array, a fraction of a
millisecond against an inference; the capture thread reuses its frame buffers anyway (FramePool).
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """mallopt(M_MMAP_THRESHOLD, threshold) where the C library has it (glibc); False elsewhere."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to fix
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return ok
