"""A camera's 20 seconds built from real photos, for the clips acceptance test (and to look at).

960x540 at 15 fps, scikit-image's grass as the background; a person (COCO 000000000431) walks in from
the left and back out (frames 30-74), the picture stays empty for 2.5 s, scikit-image's cat sits in the
middle (frames 112-149), and later a person (frames 190-219) and, a second after it left, the cat
(frames 235-264): with pre/post 1 s the first two are clips of their own (more than pre + post apart,
counting the tracker's leave_frames), the last two share one.
Written as an MPEG-4 file (OpenCV's mp4v), a file source like any other.
"""

from pathlib import Path

import cv2

from scene_parts import crop, paste

WIDTH, HEIGHT, FPS = 960, 540, 15
FRAMES = 300
PERSON = ((30, 75), (190, 220))  # frames [first, last + 1) the person is in the picture
CAT = ((112, 150), (235, 265))


def person_left(frame: int, first: int, last: int) -> int:
    """In from the left edge to the middle over the first half, back out over the second."""
    middle, half = (first + last) / 2, (last - first) / 2
    return int(380 - 380 * abs(frame - middle) / half) - 60


def build(path: Path, coco_images: Path) -> Path:
    from skimage import data

    grass = data.grass()
    background = cv2.resize(cv2.cvtColor(grass, cv2.COLOR_GRAY2BGR) if grass.ndim == 2 else grass, (WIDTH, HEIGHT))
    person = crop(coco_images, "000000000431.jpg", (154, 67, 157, 252), 300)
    cat = cv2.resize(cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR), (340, 256))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))

    for frame in range(FRAMES):
        canvas = background.copy()
        for first, last in PERSON:
            if first <= frame < last:
                paste(canvas, person, person_left(frame, first, last), HEIGHT - 20 - person.shape[0])
        for first, last in CAT:
            if first <= frame < last:
                paste(canvas, cat, 520, 150)
        writer.write(canvas)
    writer.release()
    return path
