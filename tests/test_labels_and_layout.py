"""Label-map formats and the SSD output-role resolution (TF1 names, TF2 signatures)."""

import pytest

from pidetect.inference.ssd import OutputLayout, resolve_output_layout
from pidetect.errors import ModelError
from pidetect.inference.labels import load_labels, parse_labels


def test_coral_format_keeps_ids_with_gaps():
    labels = parse_labels("0  person\n1  bicycle\n\n11  fire hydrant\n13  stop sign\n")
    assert labels == {0: "person", 1: "bicycle", 11: "fire hydrant", 13: "stop sign"}


def test_one_name_per_line():
    assert parse_labels("person\nbicycle\ncar\n") == {0: "person", 1: "bicycle", 2: "car"}


def test_tensorflow_sample_format_drops_background_line():
    assert parse_labels("???\nperson\nbicycle\n") == {0: "person", 1: "bicycle"}


def test_default_coco_labels(model_paths):
    labels = load_labels(model_paths[1])
    assert len(labels) == 80 and labels[0] == "person" and labels[16] == "cat" and labels[89] == "toothbrush"


def test_empty_and_duplicate_labels_are_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ModelError, match="empty"):
        load_labels(empty)
    with pytest.raises(ModelError, match=r"dup.txt:2: class id 0 appears twice"):
        dup = tmp_path / "dup.txt"
        dup.write_text("0 person\n0 cat\n")
        load_labels(dup)


def _out(index, name, shape):
    return {"index": index, "name": name, "shape": shape}


def test_tf1_layout_by_names():
    outputs = [_out(252, "TFLite_Detection_PostProcess", [1, 20, 4]), _out(253, "TFLite_Detection_PostProcess:1", [1, 20]),
               _out(254, "TFLite_Detection_PostProcess:2", [1, 20]), _out(255, "TFLite_Detection_PostProcess:3", [1])]
    assert resolve_output_layout(outputs) == OutputLayout(252, 253, 254, 255)


def test_tf2_layout_by_signature_in_a_different_order():
    # order as a TF2 export lists them: scores, boxes, count, classes
    outputs = [_out(600, "StatefulPartitionedCall:1", [1, 10]), _out(598, "StatefulPartitionedCall:3", [1, 10, 4]),
               _out(601, "StatefulPartitionedCall:0", [1]), _out(599, "StatefulPartitionedCall:2", [1, 10])]
    signature = {"detection_scores": 600, "detection_boxes": 598, "num_detections": 601, "detection_classes": 599}
    assert resolve_output_layout(outputs, signature) == OutputLayout(boxes=598, classes=599, scores=600, count=601)


def test_ambiguous_layout_is_refused_not_guessed():
    outputs = [_out(1, "a", [1, 10]), _out(2, "b", [1, 10, 4]), _out(3, "c", [1]), _out(4, "d", [1, 10])]
    with pytest.raises(ModelError, match="cannot tell the classes output from the scores output"):
        resolve_output_layout(outputs)


def test_wrong_shapes_are_refused():
    outputs = [_out(1, "a", [1, 10]), _out(2, "b", [1, 10, 7]), _out(3, "c", [1]), _out(4, "d", [1, 10])]
    with pytest.raises(ModelError, match="do not have SSD post-processing shapes"):
        resolve_output_layout(outputs)
