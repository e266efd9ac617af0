"""`pidetect detect`: photos in, objects out (and, with --save, the photos with their boxes drawn)."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import UsageError
from .options import detector_from_args


def detect_command(args: argparse.Namespace) -> int:
    from ..capture.image_files import ImageFileError, read_image

    detector = detector_from_args(args)
    unreadable = []
    for path in args.images:
        try:
            image = read_image(path)
        except ImageFileError as exc:
            print(f"pidetect: cannot read image {exc}", file=sys.stderr)
            unreadable.append(path)
            continue
        result = detector.detect_image(image, tiled=args.tiles)
        if args.json:
            found = {"image": str(path), "detections": [d.as_dict() for d in result.detections],
                     "inference_ms": round(result.inference_ms, 2)}
            if args.tiles:
                found["model_calls"] = result.model_calls
            print(json.dumps(found), flush=True)
        else:
            height, width = image.shape[:2]
            calls = f" in {result.model_calls} tiles" if result.model_calls > 1 else ""
            print(f"{path} ({width}x{height}): {len(result.detections)} object(s), "
                  f"{result.inference_ms:.1f} ms{calls}")
            for d in result.detections:
                x1, y1, x2, y2 = d.box
                print(f"  {d.label:<16} {d.score:5.2f}  box x1={x1} y1={y1} x2={x2} y2={y2}")
    if unreadable:
        raise UsageError(f"{len(unreadable)} of {len(args.images)} image(s) could not be read "
                         "(see above); give paths to JPEG/PNG/BMP files")
    return 0
