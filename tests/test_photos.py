"""The real default model through the real backend on real photos, checked as a person would."""

import mmap
import os

import cv2
import pytest

from pidetect.tools.demo import load_photo
from pidetect.inference.detector import Detector, DetectorOptions


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / float(area(a) + area(b) - inter)


# Regions set by hand on a 50-px grid drawn over each photo: the object's extent, and a point that
# must lie inside any correct box (the astronaut's face, the cat's eye, the cup's rim, ...).
PHOTOS = [
    ("astronaut.png", "person", (20, 15, 370, 512), (225, 120)),
    ("chelsea.png", "cat", (0, 0, 420, 300), (170, 115)),
    ("coffee.png", "cup", (175, 15, 410, 300), (290, 60)),
    ("motorcycle_left.png", "motorcycle", (95, 70, 685, 450), (400, 320)),
    ("horse.png", "horse", (10, 0, 395, 328), (200, 160)),
]


@pytest.mark.parametrize("photo,label,region,inside", PHOTOS, ids=[p[0] for p in PHOTOS])
def test_photo_object_found_where_it_is(detector, photo, label, region, inside):
    image = load_photo(photo)
    result = detector.detect_image(image)
    matching = [d for d in result.detections if d.label == label]
    assert matching, f"{photo}: expected a {label}, got {[(d.label, d.score) for d in result.detections]}"
    best = matching[0]
    assert best.score > 0.5
    assert iou(best.box, region) >= 0.7, f"{photo}: box {best.box} vs hand-set region {region}"
    x, y = inside
    assert best.box[0] <= x <= best.box[2] and best.box[1] <= y <= best.box[3]
    height, width = image.shape[:2]
    assert 0 <= best.box[0] < best.box[2] <= width - 1 and 0 <= best.box[1] < best.box[3] <= height - 1


def test_rocket_has_nothing_above_half(detector):
    assert detector.detect_image(load_photo("rocket.jpg")).detections == ()


def test_box_is_in_pixels_of_the_original_frame(detector):
    image = load_photo("chelsea.png")
    small = detector.detect_image(image).detections[0].box
    big_image = cv2.resize(image, None, fx=2, fy=2)
    big = detector.detect_image(big_image).detections[0].box
    for s, b in zip(small, big):
        assert abs(b - 2 * s) <= 6, (small, big)


def test_allow_deny_and_max_results(model_paths):
    coffee = load_photo("coffee.png")
    low = Detector(*model_paths, DetectorOptions(threshold=0.3))
    labels = [d.label for d in low.detect_image(coffee).detections]
    assert "cup" in labels and len(labels) >= 2, labels
    only_cup = Detector(*model_paths, DetectorOptions(threshold=0.3, allow=frozenset({"cup"})))
    assert {d.label for d in only_cup.detect_image(coffee).detections} == {"cup"}
    no_cup = Detector(*model_paths, DetectorOptions(threshold=0.3, deny=frozenset({"cup"})))
    assert "cup" not in {d.label for d in no_cup.detect_image(coffee).detections}
    one = Detector(*model_paths, DetectorOptions(threshold=0.3, max_results=1))
    found = one.detect_image(coffee).detections
    assert len(found) == 1 and found[0].label == "cup"  # the strongest one is kept


def test_threads_and_backend_are_reported(model_paths):
    detector = Detector(*model_paths, DetectorOptions(num_threads=1))
    assert detector.num_threads == 1
    assert detector.backend.name == "ai_edge_litert"
    assert detector.backend.version[0].isdigit()


def test_grey_and_bgra_frames_are_converted(detector):
    bgr = load_photo("chelsea.png")
    expected = detector.detect_image(bgr).detections
    bgra = detector.detect_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)).detections
    assert bgra == expected
    grey = detector.detect_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)).detections
    assert grey and grey[0].label == "cat"


def test_model_pages_are_released_after_loading_and_detection_still_works(model_paths):
    """XNNPACK repacks the weights, so the mapped file is dropped from the resident set after loading."""
    from pidetect.tools.measure import mapped_rss_mb
    from pidetect.inference.detector import release_cold_model_pages

    model, labels = model_paths
    model = model.resolve()
    detector = Detector(model, labels, DetectorOptions(num_threads=1))
    with open("/proc/self/maps") as maps:
        assert any(line.rstrip().endswith(str(model)) for line in maps), "the interpreter maps the model file"
    assert mapped_rss_mb(os.getpid(), model) < 0.5, "the constructor left the model's pages resident"
    whole_file = -(-model.stat().st_size // mmap.PAGESIZE) * mmap.PAGESIZE
    released = release_cold_model_pages(model)  # every interpreter alive in this process maps the whole file
    assert released >= whole_file and released % whole_file == 0, (released, whole_file)
    result = detector.detect_image(load_photo("chelsea.png"))
    assert [d.label for d in result.detections][:1] == ["cat"]
    # The few non-delegated ops (the post-processing op reads its 30 KB of anchors) fault back a little: one
    # unit of the page cache around them, which on kernels with large folios (6.18 here) is a whole 1-2 MB
    # folio, not a 64 KB fault-around. At most that one folio: the other 4.7+ MB stay released.
    assert mapped_rss_mb(os.getpid(), model) <= 2.0, "inference read the released weights back in (6.7 MB)"
