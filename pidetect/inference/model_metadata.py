"""Labels and facts a model carries inside its file, so a user needs no labels file for it.

Two kinds are read, both stored as a zip archive appended to the FlatBuffer:
- Ultralytics exports: `temp_meta.txt`, the repr of a Python dict (`names`, `imgsz`, `stride`,
  `task`, …). It is parsed with `ast.literal_eval`, which accepts literals only: a model file can
  never make pidetect run code.
- TFLite Metadata (Model Maker, TF Hub): the label file among the associated files (`labelmap.txt`,
  `labels.txt`), one name per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import ModelError
from .labels import clean_label, parse_labels

END_OF_ZIP = b"PK\x05\x06"
TAIL_BYTES = 65536 + 22  # the end-of-archive record sits within the last 64 KiB + 22 bytes
MAX_MEMBER_BYTES = 1 << 20  # a label list or metadata dict is a few KB; refuse a zip bomb
MAX_MEMBERS = 64
# What a damaged archive raises: encrypted members (RuntimeError), unknown compression (NotImplementedError),
# bad deflate data (zlib.error, an Exception subclass caught as such below), truncation, bad names.
ARCHIVE_ERRORS = (ValueError, RuntimeError, NotImplementedError, OSError, EOFError, UnicodeDecodeError)


class MetadataError(ModelError):
    """The archive appended to the model is there but cannot be read."""


@dataclass(frozen=True)
class EmbeddedMetadata:
    names: Optional[Dict[int, str]] = None
    task: Optional[str] = None
    where: str = ""  # which member the names came from, for messages


def read_embedded_metadata(path: Path) -> EmbeddedMetadata:
    """The labels and task the model carries; an empty EmbeddedMetadata when it carries none."""
    path = Path(path)
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - TAIL_BYTES))
        if END_OF_ZIP not in handle.read():
            return EmbeddedMetadata()
    try:
        members = dict(read_archive(path))
        if "temp_meta.txt" in members:
            return _ultralytics(path, members["temp_meta.txt"])
        label_files = sorted((name for name in members if name.lower().endswith(".txt")),
                             key=lambda name: ("label" not in name.lower(), name))
        if label_files:
            text = members[label_files[0]].decode("utf-8")
            return EmbeddedMetadata(parse_labels(text, f"{path}:{label_files[0]}"), None, label_files[0])
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{path}: the metadata archive appended to the model is damaged ({exc}); pass "
                            "--labels FILE to use the model without it") from None
    return EmbeddedMetadata()


def read_archive(path: Path) -> List[Tuple[str, bytes]]:
    """Every member of the zip appended to the model, each read with the MAX_MEMBER_BYTES cap (a member that
    claims or inflates to more is an error, never gigabytes in memory); MetadataError when it is unreadable."""
    import zipfile  # only for models that carry an archive: the daemon's start-up stays lean
    import zlib

    try:
        with zipfile.ZipFile(path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            if len(infos) > MAX_MEMBERS:
                raise ValueError(f"{len(infos)} members (at most {MAX_MEMBERS})")
            return [(info.filename, _read_member(archive, info)) for info in infos]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, *ARCHIVE_ERRORS) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise MetadataError(f"{path}: the metadata archive appended to the model is damaged or unreadable "
                            f"({reason}); pass --labels FILE to use the model without it") from None


def _read_member(archive, info) -> bytes:
    if info.file_size > MAX_MEMBER_BYTES:
        raise ValueError(f"{info.filename} claims {info.file_size} bytes")
    with archive.open(info) as member:
        data = member.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:  # the header lied about the size
        raise ValueError(f"{info.filename} inflates to more than {MAX_MEMBER_BYTES} bytes")
    return data


def _ultralytics(path: Path, raw: bytes) -> EmbeddedMetadata:
    import ast

    try:
        meta = ast.literal_eval(raw.decode("utf-8"))
    except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError, TypeError) as exc:
        # the parser says MemoryError or RecursionError, often with no text, for literals nested too deeply
        reason = "nested too deeply" if isinstance(exc, (RecursionError, MemoryError)) else \
            (str(exc).strip() or type(exc).__name__)
        raise MetadataError(f"{path}: temp_meta.txt in the model's metadata is not a readable dict ({reason}); "
                            "pass --labels FILE") from None
    if not isinstance(meta, dict):
        raise MetadataError(f"{path}: temp_meta.txt in the model's metadata is not a dict; pass --labels FILE")
    names = meta.get("names")
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if names is not None and not (isinstance(names, dict) and all(isinstance(k, int) and isinstance(v, str)
                                                                  for k, v in names.items())):
        raise MetadataError(f"{path}: 'names' in the model's metadata is not a list of class names; "
                            "pass --labels FILE")
    names = {class_id: clean_label(name, class_id) for class_id, name in names.items()} if names else None
    task = meta.get("task")
    return EmbeddedMetadata(names or None, task if isinstance(task, str) else None, "temp_meta.txt")
