"""Regions: planning square crops at the model's scale around what matters, and merging what each saw."""

from __future__ import annotations

from pidetect.frames import Detection
from pidetect.inference.regions import Region, merge, plan, to_frame, whole

W, H, SIDE = 1920, 1080, 300


def person(box, score=0.8, label="person"):
    return Detection(label, 0, score, box)


def covers(region: Region, box) -> bool:
    x1, y1, x2, y2 = region.box
    return x1 <= box[0] and y1 <= box[1] and box[2] <= x2 and box[3] <= y2


def test_nothing_known_is_a_whole_frame_look():
    assert plan(W, H, SIDE, [], whole_due=False, budget=3) == [whole(W, H)]


def test_two_motion_boxes_close_together_make_one_region_at_the_model_scale():
    a, b = (900, 500, 930, 580), (960, 510, 990, 590)
    [region] = plan(W, H, SIDE, [a, b], whole_due=False, budget=3)
    assert (region.width, region.height) == (SIDE, SIDE)  # 1:1 pixels: nothing squeezed
    assert covers(region, a) and covers(region, b)


def test_boxes_far_apart_get_a_region_each():
    a, b = (100, 100, 130, 180), (1500, 800, 1530, 880)
    regions = plan(W, H, SIDE, [a, b], whole_due=False, budget=3)
    assert len(regions) == 2 and all(r.width == SIDE for r in regions)
    assert any(covers(r, a) for r in regions) and any(covers(r, b) for r in regions)


def test_a_box_larger_than_the_input_gets_one_region_covering_it_scaled():
    bus = (400, 200, 1000, 700)  # 600x500: bigger than 300
    [region] = plan(W, H, SIDE, [bus], whole_due=False, budget=3)
    assert region.width == region.height > SIDE and covers(region, bus)


def test_the_budget_merges_the_closest_clusters():
    boxes = [(100, 100, 130, 180), (600, 100, 630, 180), (1500, 800, 1530, 880), (1800, 900, 1830, 980)]
    regions = plan(W, H, SIDE, boxes, whole_due=False, budget=2)
    assert len(regions) == 2
    for box in boxes:
        assert any(covers(r, box) for r in regions), box


def test_the_whole_frame_when_due_counts_in_the_budget():
    regions = plan(W, H, SIDE, [(100, 100, 130, 180), (1500, 800, 1530, 880)], whole_due=True, budget=2)
    assert regions[0] == whole(W, H) and len(regions) == 2


def test_regions_stay_inside_the_frame():
    [region] = plan(W, H, SIDE, [(1900, 1060, 1919, 1079)], whole_due=False, budget=3)
    assert region.x + region.width <= W and region.y + region.height <= H and region.x >= 0 and region.y >= 0


def test_boxes_map_back_to_frame_pixels_exactly():
    region = Region(700, 300, 300, 300)
    [mapped] = to_frame([person((10, 20, 50, 120))], region)
    assert mapped.box == (710, 320, 750, 420)


def test_cross_region_nms_keeps_the_whole_box_not_the_cut_one():
    left, right = Region(0, 0, 300, 300), Region(200, 0, 300, 300)
    whole_person = person((240, 50, 280, 200), 0.7)  # inside the right region, clear of its borders
    cut_person = person((240, 50, 300, 200), 0.9)  # the left region cut it at x = 300: higher score, half a box
    merged = merge([(left, [cut_person]), (right, [whole_person])], 1000, 1000, 10)
    assert merged == (whole_person,)


def test_the_same_object_seen_by_two_regions_is_one_detection():
    a, b = Region(0, 0, 300, 300), Region(100, 0, 300, 300)
    seen_a, seen_b = person((150, 50, 190, 150), 0.8), person((152, 51, 191, 151), 0.75)
    assert merge([(a, [seen_a]), (b, [seen_b])], 1000, 1000, 10) == (seen_a,)


def test_different_labels_and_separate_objects_are_all_kept():
    a = Region(0, 0, 300, 300)
    dog, person_ = person((50, 50, 150, 150), 0.8, "dog"), person((60, 40, 150, 160), 0.7)
    far = person((600, 600, 640, 700), 0.6)
    merged = merge([(a, [dog, person_]), (whole(1000, 1000), [far])], 1000, 1000, 10)
    assert set(merged) == {dog, person_, far}


def test_a_box_at_the_frame_edge_is_not_cut():
    region = Region(0, 0, 300, 300)  # the frame's own left and top edges
    at_edge = person((0, 0, 40, 100))
    assert merge([(region, [at_edge]), (whole(1000, 1000), [])], 1000, 1000, 10) == (at_edge,)


def test_tiles_cover_the_photo_at_the_model_scale_and_overlap():
    from pidetect.inference.regions import tiles

    found = tiles(640, 480, 300)
    assert found[-1] == whole(640, 480)  # large objects: the whole photo too
    squares = found[:-1]
    assert all(r.width == r.height == 300 for r in squares)
    for x in range(0, 640, 20):  # every point of the photo lies in some tile
        for y in range(0, 480, 20):
            assert any(r.x <= x < r.x + r.width and r.y <= y < r.y + r.height for r in squares)
    big = tiles(4000, 3000, 300, max_tiles=12)
    assert len(big) - 1 <= 12 and big[0].width > 300  # a huge photo: fewer, larger tiles, never hundreds
