"""Frame buffers that a source fills again once nothing references them any more.

Why: a new 2.7 MB array per 720p frame, freed whenever the last of capture, slot, inference and
display lets go of it, made the allocator hold more than was in use: the resident size peaked
2-5 MB above its steady level (measured with `pidetect bench`). Refilling a handful of buffers
keeps memory flat and skips an allocation per frame.

A buffer is free when the pool's own reference is the only one left (sys.getrefcount), so a frame
that is still held anywhere, even through a numpy view of it, is never written over. Only the
source's capture thread calls the pool; other threads only drop references.
"""

from __future__ import annotations

import sys
from typing import List, Optional

import numpy as np


class FramePool:
    def __init__(self, size: int = 6):
        self.size = size
        self._buffers: List[np.ndarray] = []

    def free_buffer(self) -> Optional[np.ndarray]:
        """A pooled buffer nobody else references, or None (then the caller lets the source allocate)."""
        for index in range(len(self._buffers)):
            if sys.getrefcount(self._buffers[index]) == 2:  # the list's reference + this call's argument
                return self._buffers[index]
        return None

    def keep(self, image: np.ndarray) -> None:
        """Remember a freshly allocated frame for reuse; buffers of another size (the camera changed
        mode) are let go."""
        if self._buffers and self._buffers[0].shape != image.shape:
            self._buffers = []
        if len(self._buffers) < self.size and not any(buffer is image for buffer in self._buffers):
            self._buffers.append(image)

    def __len__(self) -> int:
        return len(self._buffers)
