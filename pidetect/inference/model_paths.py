"""Which model file and labels to load: the manifest's default, in the folder models live in.

Small and import-light on purpose: the daemon needs it at start-up, while fetching and verifying
(models/fetch.py) pull in hashing and archives only when asked.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple


MANIFEST_PATH = Path(__file__).resolve().parent.parent / "data" / "manifest.json"
PACKAGE_CHECKOUT_MODELS = Path(__file__).resolve().parent.parent.parent / "models"
INSTALLED_MODELS = Path("/opt/pidetect/models")


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    sha256: str
    what: str


@dataclass(frozen=True)
class DerivedFile:
    """A file pidetect makes from a fetched one (the int8 default from Coral's uint8 model)."""

    name: str
    source: str  # the fetched file it is made from
    transform: str  # "requantize-int8"
    size: int
    sha256: str  # the transform is deterministic: the same bytes everywhere
    what: str


@dataclass(frozen=True)
class Manifest:
    default_model: str
    default_labels: str
    files: Sequence[ModelFile]
    sources: Sequence[dict]
    derived: Sequence[DerivedFile] = ()
    default_edgetpu_model: str = ""  # the default model compiled for the Coral Edge TPU

    def file(self, name: str) -> ModelFile:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise KeyError(name)


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    data = json.loads(Path(path).read_text())
    return Manifest(
        default_model=data["default_model"],
        default_labels=data["default_labels"],
        files=tuple(ModelFile(f["name"], int(f["size"]), f["sha256"], f["what"]) for f in data["files"]),
        sources=tuple(data["sources"]),
        derived=tuple(DerivedFile(d["name"], d["from"], d["transform"], int(d["size"]), d["sha256"], d["what"])
                      for d in data.get("derived", [])),
        default_edgetpu_model=data.get("default_edgetpu_model", ""),
    )


def default_model_dir() -> Path:
    """Where models live when the user names none.

    $PIDETECT_MODEL_DIR wins; a source checkout uses its own models/ folder; an installed
    service uses /opt/pidetect/models (what deploy/install.sh creates).
    """
    env = os.environ.get("PIDETECT_MODEL_DIR")
    if env:
        return Path(env)
    if (PACKAGE_CHECKOUT_MODELS / "manifest.json").is_file():
        return PACKAGE_CHECKOUT_MODELS
    return INSTALLED_MODELS


def resolve_model_paths(model: Optional[Path] = None, labels: Optional[Path] = None) -> Tuple[Path, Optional[Path]]:
    """The model the user named (or the default one) and the labels file the user named (None: the
    Detector takes the labels the model carries, or the default labels beside it).

    The default is the int8 model `pidetect models fetch` derives; where it has not been made yet
    (an older install), the uint8 file it comes from is used, with a warning saying how to upgrade.
    """
    manifest = load_manifest()
    if model:
        return Path(model), Path(labels) if labels else None
    folder = default_model_dir()
    chosen = folder / manifest.default_model
    if not chosen.exists():
        for derived in manifest.derived:
            if derived.name == manifest.default_model and (folder / derived.source).exists():
                logging.getLogger(__name__).warning(
                    "the int8 default %s is not in %s yet: using %s (about 2x slower); run 'pidetect models "
                    "fetch' to make it", derived.name, folder, derived.source)
                chosen = folder / derived.source
    return chosen, Path(labels) if labels else None
