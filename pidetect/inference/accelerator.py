"""Which accelerator runs which model file: `accelerator = auto | cpu | edgetpu`.

- cpu: the model as named (default: the int8 SSD); an Edge TPU build is refused, the CPU cannot run it.
- edgetpu: the model's Edge TPU build (default: the one `models fetch` installs); a CPU model is refused,
  on the TPU it would run no op at all. The library and a device must answer.
- auto (the default): the Edge TPU build when the library loads, a device answers and the build runs;
  otherwise the CPU model, and `Detector.accelerator_note` says why (the daemon logs it once).

A user's model counts as having an Edge TPU build when it is one (it holds edgetpu-custom-op) or when
edgetpu_compiler's output, `<name>_edgetpu.tflite`, lies beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config import ACCELERATORS
from ..errors import ConfigError, ModelError, UnavailableError
from .backends import resolve_backend
from .detector import Detector, DetectorOptions
from .edgetpu import EdgeTpuLibraryMissing, EdgeTpuMismatch, EdgeTpuNoDevice, is_edgetpu_model, load_delegate
from .model_paths import default_model_dir, load_manifest, resolve_model_paths

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class AcceleratorSettings:
    accelerator: str = "auto"
    device: str = ""  # edgetpu_device: "", usb, usb:N, pci, pci:N


def default_edgetpu_model() -> Path:
    """Where `models fetch` puts the default model's Edge TPU build."""
    return default_model_dir() / load_manifest().default_edgetpu_model


def edgetpu_build_of(model: Optional[Path], chosen: Path) -> Optional[Path]:
    """The Edge TPU build that goes with the model the user named (None: the default), if there is one."""
    if model is None:
        path = default_edgetpu_model()
        return path if path.is_file() else None
    if is_edgetpu_model(chosen):
        return chosen
    beside = chosen.with_name(f"{chosen.stem}_edgetpu.tflite")
    return beside if beside.is_file() and is_edgetpu_model(beside) else None


def open_detector(model: Optional[Path], labels: Optional[Path], options: DetectorOptions,
                  settings: AcceleratorSettings = AcceleratorSettings()) -> Detector:
    """The Detector `settings` ask for; raises the error that says what is missing (see the module's text)."""
    backend = resolve_backend(options.backend)
    chosen, labels = resolve_model_paths(model, labels)
    if settings.accelerator == "cpu":
        if is_edgetpu_model(chosen):
            raise ModelError(f"{chosen} is compiled for the Edge TPU (it holds edgetpu-custom-op), which accelerator "
                             "= cpu cannot run: set accelerator = edgetpu or auto, or name the model it was compiled "
                             "from (without _edgetpu)")
        return Detector(chosen, labels, options, backend)
    tpu_model = edgetpu_build_of(model, chosen)
    if settings.accelerator == "edgetpu":
        if tpu_model is None:
            raise ModelError(_no_edgetpu_build(model, chosen) + ": on the Edge TPU it would run 0 ops. Compile it "
                             "with edgetpu_compiler and name the _edgetpu.tflite it writes, or set accelerator = "
                             "cpu (or auto)")
        return Detector(tpu_model, labels, options, backend, load_delegate(backend, settings.device))
    if settings.accelerator != "auto":
        raise ConfigError(f"accelerator {settings.accelerator!r}: must be one of " + ", ".join(ACCELERATORS))
    only_tpu = model is not None and is_edgetpu_model(chosen)  # nothing to fall back to
    try:
        delegate = load_delegate(backend, settings.device)
    except (EdgeTpuLibraryMissing, EdgeTpuNoDevice) as exc:
        if only_tpu:
            raise UnavailableError(f"{chosen} is compiled for the Edge TPU and there is none to run it: {exc}. "
                                   "Name the CPU model it was compiled from to run without one") from None
        why = ("the Edge TPU runtime (libedgetpu.so.1) is not installed" if isinstance(exc, EdgeTpuLibraryMissing)
               else "no Edge TPU answers")
        detector = _on_cpu(chosen, labels, options, backend, f"accelerator auto: {why}; the model runs on the CPU")
        detector.accelerator_missing_runtime = isinstance(exc, EdgeTpuLibraryMissing)
        return detector
    if tpu_model is None:
        del delegate  # frees the device for another program
        return _on_cpu(chosen, labels, options, backend,
                       f"accelerator auto: an Edge TPU answers, but {_no_edgetpu_build(model, chosen)}; "
                       "the model runs on the CPU")
    try:
        return Detector(tpu_model, labels, options, backend, delegate)
    except EdgeTpuMismatch as exc:
        if only_tpu:
            raise
        return _on_cpu(chosen, labels, options, backend,
                       f"accelerator auto: the Edge TPU cannot run {tpu_model.name} ({exc}); the model runs on the CPU")


def _no_edgetpu_build(model: Optional[Path], chosen: Path) -> str:
    if model is None:
        path = default_edgetpu_model()
        return f"the default model's Edge TPU build {path.name} is not in {path.parent} (run 'pidetect models fetch')"
    return (f"{chosen} is not compiled for the Edge TPU (no edgetpu-custom-op in it, no "
            f"{chosen.stem}_edgetpu.tflite beside it)")


def _on_cpu(model: Path, labels: Optional[Path], options: DetectorOptions, backend, note: str) -> Detector:
    detector = Detector(model, labels, options, backend)
    detector.accelerator_note = note
    log.debug("%s", note)
    return detector
