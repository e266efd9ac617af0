"""Label maps: class id -> name, in the three formats found next to SSD models.

- Coral / pycoral: ``<id>  <name>`` per line (ids may have gaps, e.g. coco_labels.txt).
- One name per line: the line number is the class id.
- TensorFlow's sample ``labelmap.txt``: first line ``???`` (the background class the
  post-processing op already removed), then one name per line; the ``???`` line is dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

from ..errors import ModelError

_CORAL_LINE = re.compile(r"^\s*(\d+)[\s:,]+(.+?)\s*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean_label(name: str, class_id: int) -> str:
    """A label safe to log, to name files and topics after: control characters (a newline would forge a
    log line) become a space; an empty name becomes class_N (it would name nothing, and no file)."""
    name = _CONTROL.sub(" ", name).strip()
    return name or f"class_{class_id}"


def parse_labels(text: str, where: str = "labels") -> Dict[int, str]:
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ModelError(f"{where}: the labels file is empty; it needs one class name per line "
                         f"or '<id>  <name>' lines (e.g. coco_labels.txt)")
    if all(_CORAL_LINE.match(line) for line in lines):
        labels: Dict[int, str] = {}
        for number, line in enumerate(lines, 1):
            match = _CORAL_LINE.match(line)
            class_id, name = int(match.group(1)), match.group(2)
            if class_id in labels:
                raise ModelError(f"{where}:{number}: class id {class_id} appears twice")
            labels[class_id] = clean_label(name, class_id)
        return labels
    if lines[0] == "???":
        lines = lines[1:]
        if not lines:
            raise ModelError(f"{where}: the labels file holds only the '???' background line; it needs the "
                             "class names after it, one per line")
    return {class_id: clean_label(name, class_id) for class_id, name in enumerate(lines)}


def load_labels(path: Path) -> Dict[int, str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"labels file not found: {path} (run 'pidetect models fetch' for the default "
                         f"coco_labels.txt, or pass --labels PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read labels file {path}: {exc}") from None
    return parse_labels(text, str(path))


def unknown_label(name: str, known) -> str:
    """How to name a label the model does not have: 'persn' (did you mean person?)."""
    import difflib

    close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.5)
    return f"'{name}'" + (f" (did you mean {', '.join(close)}?)" if close else "")
