"""`pidetect detect`: photos in, objects out (and, with --save, the photos with their boxes drawn).

Inputs are image files, folders (the images directly in them, in name order) or glob patterns (`'shots/*.jpg'`,
quoted so that pidetect expands them: a shell would stop at its argument limit). With `--save OUT` each photo is
written to OUT with the boxes drawn by the overlay the live view uses; a name already there is never overwritten
(`photo-2.jpg` instead), and OUT may not be a folder the photos are read from.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path
from typing import List, Optional

from ..errors import UsageError
from .options import detector_from_args

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def expand_inputs(specs: List[Path]) -> List[Path]:
    """Files as given; a folder's images (not its sub-folders), in name order; a glob's matches, in name order."""
    found: List[Path] = []
    for spec in specs:
        text = str(spec)
        if spec.is_dir():
            images = sorted(p for p in spec.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise UsageError(f"{spec}: no images in this folder (it reads {', '.join(IMAGE_SUFFIXES)})")
            found += images
        elif not spec.exists() and any(ch in text for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise UsageError(f"{text}: no file matches this pattern")
            found += matches
        else:
            found.append(spec)  # a missing file is said by read_image, with the others still done
    return found


def check_output_folder(out: Path, inputs: List[Path]) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--save {out}: a file, not a folder; give a folder to write the pictures into")
    resolved = out.resolve()
    if any(path.resolve().parent == resolved for path in inputs):
        raise UsageError(f"--save {out}: the photos are read from there; choose another folder (no photo of yours "
                         "is ever overwritten)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--save {out}: cannot create the folder ({exc.strerror or exc})") from None


def free_path(out: Path, source: Path, taken: set) -> Path:
    """OUT/<name of the photo>, or <stem>-2<suffix>… when that name is in the folder or was written this run."""
    suffix = source.suffix.lower() if source.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg"
    candidate = out / f"{source.stem}{suffix}"
    number = 2
    while candidate.exists() or candidate in taken:
        candidate = out / f"{source.stem}-{number}{suffix}"
        number += 1
    taken.add(candidate)
    return candidate


def save_drawn(result, path: Path, overlay) -> Optional[str]:
    """The photo with its boxes, written whole (a temporary name, then renamed); an error in words, or None."""
    import cv2

    from ..files import replaced_when_done

    picture = overlay.draw(result)
    ok, data = cv2.imencode(path.suffix if path.suffix != ".jpeg" else ".jpg", picture,
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        return f"cannot encode {path.name}"
    try:
        with replaced_when_done(path, suffix=path.suffix) as temporary:
            temporary.write_bytes(data.tobytes())
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"
    return None


def detect_command(args: argparse.Namespace) -> int:
    from ..capture.image_files import ImageFileError, read_image

    inputs = expand_inputs(args.images)
    overlay = None
    if args.save is not None:
        from ..outputs.overlay import Overlay

        check_output_folder(args.save, inputs)
        overlay, taken = Overlay(), set()
    detector = detector_from_args(args)
    unreadable, unsaved = [], []
    for path in inputs:
        try:
            image = read_image(path)
        except ImageFileError as exc:
            print(f"pidetect: cannot read image {exc}", file=sys.stderr)
            unreadable.append(path)
            continue
        result = detector.detect_image(image, tiled=args.tiles)
        saved = None
        if overlay is not None:
            target = free_path(args.save, path, taken)
            problem = save_drawn(result, target, overlay)
            if problem:
                print(f"pidetect: {problem}", file=sys.stderr)
                unsaved.append(path)
            else:
                saved = str(target)
        if args.json:
            found = {"image": str(path), "detections": [d.as_dict() for d in result.detections],
                     "inference_ms": round(result.inference_ms, 2)}
            if args.tiles:
                found["model_calls"] = result.model_calls
            if overlay is not None:
                found["saved"] = saved
            print(json.dumps(found), flush=True)
        else:
            height, width = image.shape[:2]
            calls = f" in {result.model_calls} tiles" if result.model_calls > 1 else ""
            print(f"{path} ({width}x{height}): {len(result.detections)} object(s), "
                  f"{result.inference_ms:.1f} ms{calls}" + (f" -> {saved}" if saved else ""))
            for d in result.detections:
                x1, y1, x2, y2 = d.box
                print(f"  {d.label:<16} {d.score:5.2f}  box x1={x1} y1={y1} x2={x2} y2={y2}")
    if unreadable:
        raise UsageError(f"{len(unreadable)} of {len(inputs)} image(s) could not be read "
                         "(see above); give paths to JPEG/PNG/BMP files, folders or patterns")
    if unsaved:
        raise UsageError(f"{len(unsaved)} of {len(inputs)} picture(s) could not be saved (see above)")
    return 0
