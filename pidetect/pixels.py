"""Every frame as 8-bit BGR, the one pixel format the motion detector, the model and the sinks read.

Why one place: cameras and files deliver grey, BGRA, 16-bit or float images now and then (a thermal
camera, a PNG sequence from a scientific camera, a TIFF). Each stage reading them differently made
the motion detector blind to grey frames, the detector keep its previous input for 16-bit ones (a
resize into the uint8 input tensor silently went elsewhere) and snapshot drawing raise. Converted
once where the frame enters the pipeline, nothing after it needs to care.
"""

from __future__ import annotations

import cv2
import numpy as np


def is_bgr8(image: np.ndarray) -> bool:
    return image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def as_bgr8(image: np.ndarray) -> np.ndarray:
    """The image as H x W x 3 uint8 BGR; 8-bit BGR input is returned as it is (no copy)."""
    if is_bgr8(image):
        return image
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # full 16-bit range to 8 bits, as cv2.imread's ANYDEPTH-less read
    elif np.issubdtype(image.dtype, np.floating):
        image = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # float images are 0..1
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 2:  # grey + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 3:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(image[:, :, :3])
