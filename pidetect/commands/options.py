"""The options several commands share: the model and accelerator options, and every config key as an option."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ACCELERATORS, DEFAULT_CONFIG_PATH, FLAG_FIELDS, HELP, build_config
from ..errors import UsageError


def model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="TFLite detection model, SSD or Ultralytics YOLO (default: the "
                        "fetched Coral SSD MobileNetV2)")
    parser.add_argument("--labels", type=Path, help="labels file (default: the labels the model carries, else "
                        "coco_labels.txt beside the model)")
    parser.add_argument("--threshold", type=float, help="minimum score, 0..1 (default 0.5)")
    parser.add_argument("--max-results", type=int, help="at most this many detections per image (default 10)")
    parser.add_argument("--nms-iou", type=float, help="NMS overlap for YOLO models, 0..1 (default 0.45)")
    parser.add_argument("--threads", type=int, help="interpreter threads (default: all cores)")
    parser.add_argument("--backend", choices=["auto", "ai_edge_litert", "tflite_runtime", "tensorflow.lite"],
                        help="inference backend (default auto: the first installed, in that order)")
    accelerator_args(parser)


def accelerator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accelerator", choices=ACCELERATORS, default="auto", help=HELP["accelerator"])
    parser.add_argument("--edgetpu-device", default="", metavar="DEVICE", help=HELP["edgetpu_device"])


def accelerator_settings(args: argparse.Namespace):
    from ..config import EDGETPU_DEVICE, EDGETPU_DEVICE_RULE
    from ..inference.accelerator import AcceleratorSettings

    if not EDGETPU_DEVICE.fullmatch(args.edgetpu_device):
        raise UsageError(f"--edgetpu-device {args.edgetpu_device!r}: {EDGETPU_DEVICE_RULE}")
    return AcceleratorSettings(args.accelerator, args.edgetpu_device)


def config_args(parser: argparse.ArgumentParser) -> None:
    """Every config key as an option, in the groups of the configuration reference, each with its default and
    what it takes."""
    from ..config import CHOICES, GROUPS, allowed_text, default_text

    parser.add_argument("--config", type=Path, help=f"TOML config file (default {DEFAULT_CONFIG_PATH} if it exists)")
    for title, keys in GROUPS:
        group = parser.add_argument_group(title)
        for name in keys:
            field = FLAG_FIELDS[name]
            flag = "--" + name.replace("_", "-")
            allowed = allowed_text(name)
            text = HELP[name] + f" [default {default_text(name)}" + (f"; {allowed}]" if allowed and
                                                                     name not in CHOICES else "]")
            text = text.replace("%", "%%")
            if field.type in ("bool", bool):
                group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
                continue
            kind = str(field.type)
            if name in CHOICES:
                metavar = "{" + ",".join(map(str, CHOICES[name])) + "}" + (",…" if kind.startswith("Tuple") else "")
            else:
                metavar = "A,B" if kind.startswith("Tuple") else {"str": "TEXT", "int": "N", "float": "X"}.get(kind, "V")
            group.add_argument(flag, dest=name, default=None, metavar=metavar, help=text)


def config_from_args(args: argparse.Namespace):
    overrides = {name: getattr(args, name) for name in FLAG_FIELDS}
    path = args.config or DEFAULT_CONFIG_PATH
    return build_config(path, overrides, path_required=args.config is not None), path, overrides


def detector_from_args(args: argparse.Namespace):
    from ..inference.accelerator import open_detector
    from ..inference.detector import DetectorOptions

    threshold = 0.5 if args.threshold is None else args.threshold
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold}: must be between 0 and 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be 1 or more")
    max_results = 10 if args.max_results is None else args.max_results
    if max_results < 1:
        raise UsageError(f"--max-results {max_results}: must be 1 or more")
    nms_iou = 0.45 if args.nms_iou is None else args.nms_iou
    if not 0.0 < nms_iou <= 1.0:
        raise UsageError(f"--nms-iou {nms_iou}: must be more than 0 and at most 1")
    options = DetectorOptions(threshold=threshold, num_threads=args.threads, backend=args.backend or "auto",
                              max_results=max_results, nms_iou=nms_iou)
    return open_detector(args.model, args.labels, options, accelerator_settings(args))
