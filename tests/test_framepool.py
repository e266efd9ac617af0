"""Reused frame buffers: a frame anyone still holds is never handed out again."""

import gc
import time

import numpy as np

from pidetect.capture.framepool import FramePool
from pidetect.frames import Frame


def test_a_buffer_is_reused_only_once_nothing_holds_it():
    pool = FramePool(size=3)
    first = np.zeros((4, 6, 3), np.uint8)
    pool.keep(first)
    assert pool.free_buffer() is None, "the capture thread still holds it"
    frame = Frame(first, 1, time.time())
    del first
    assert pool.free_buffer() is None, "a Frame in the slot or the worker still holds it"
    view = frame.image[1:3]  # a band being drawn: a view keeps its base alive
    del frame
    gc.collect()
    assert pool.free_buffer() is None
    del view
    reused = pool.free_buffer()
    assert reused is not None and reused.shape == (4, 6, 3)


def test_pool_size_is_capped_and_a_new_frame_size_resets_it():
    pool = FramePool(size=2)
    held = [np.zeros((4, 6, 3), np.uint8) for _ in range(3)]
    for image in held:
        pool.keep(image)
    pool.keep(held[0])  # the same buffer coming back is not added twice
    assert len(pool) == 2
    bigger = np.zeros((8, 12, 3), np.uint8)
    pool.keep(bigger)
    assert len(pool) == 1  # the camera changed mode: old buffers are let go
    del bigger
    assert pool.free_buffer().shape == (8, 12, 3)
