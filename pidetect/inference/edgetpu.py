"""The Coral Edge TPU: its delegate library, its device names, and whether a model is compiled for it.

LiteRT runs the Edge TPU through an external delegate: `load_delegate("libedgetpu.so.1", {"device": …})`
opens the library and asks it for a delegate, which takes the model's `edgetpu-custom-op` (what
edgetpu_compiler puts in place of the layers it maps to the TPU); every other op stays on the CPU.
Each way this goes wrong is told apart here, with its own message and exit code, because LiteRT says
little: a missing library is an OSError (and a traceback printed by LiteRT's own destructor), no
device a bare ValueError, a library built for another TensorFlow Lite a cryptic "custom op handler"
error at load time.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, EX_OSFILE, PidetectError, UnavailableError
from .backends import Backend, without_litert_chatter

LIBRARY = "libedgetpu.so.1"
CUSTOM_OP = b"edgetpu-custom-op"
INSTALL_HINT = "install the Edge TPU runtime: sudo deploy/install.sh --coral (docs/accelerators-and-cameras.md)"


class EdgeTpuLibraryMissing(PidetectError):
    """libedgetpu.so.1 is not installed (or cannot be loaded): retrying will not help, installing will."""

    exit_code = EX_OSFILE


class EdgeTpuNoDevice(UnavailableError):
    """The library loaded but no Edge TPU answered: plugged out, not yet enumerated, or not ours to open."""


class EdgeTpuMismatch(PidetectError):
    """The library is installed but was built for another TensorFlow Lite than the running one."""

    exit_code = EX_OSFILE


class AcceleratorLost(RuntimeError):
    """An invoke on the Edge TPU failed while running (the device was unplugged or reset)."""


@dataclass(frozen=True)
class EdgeTpuDelegate:
    """A delegate LiteRT loaded from the library, for one device; keep it alive as long as its interpreter."""

    library: str
    device: str  # as asked: "" means the first device found
    native: Any  # LiteRT's Delegate object

    @property
    def where(self) -> str:
        return f"edgetpu ({self.device or 'first device'})"


def library_name() -> str:
    """The delegate library: libedgetpu.so.1 on the loader's path, or the file $PIDETECT_EDGETPU_LIBRARY names
    (a build kept outside the system's library folders, e.g. one made for this LiteRT)."""
    return os.environ.get("PIDETECT_EDGETPU_LIBRARY") or LIBRARY


def is_edgetpu_model(path: Path) -> bool:
    """True when edgetpu_compiler made the file: it holds the Edge TPU's custom op, which only the TPU can run."""
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return mapped.find(CUSTOM_OP) >= 0
    except (OSError, ValueError):  # missing or empty: the Detector says so with its own message
        return False


def load_delegate(backend: Backend, device: str = "") -> EdgeTpuDelegate:
    """The Edge TPU delegate for `device`, or EdgeTpuLibraryMissing / EdgeTpuNoDevice saying what to do."""
    library = library_name()
    if backend.load_delegate is None:
        raise EdgeTpuLibraryMissing(f"the {backend.name} backend cannot load external delegates; use "
                                    "ai-edge-litert or tflite-runtime for the Edge TPU")
    try:
        # Found first by us: LiteRT's own OSError path leaves a half-made Delegate whose destructor prints
        # an AttributeError traceback to stderr.
        ctypes.CDLL(library)
    except OSError as exc:
        raise EdgeTpuLibraryMissing(f"the Edge TPU runtime {library} cannot be loaded ({exc}); {INSTALL_HINT}, "
                                    "or set accelerator = cpu") from None
    options = {"device": device} if device else {}
    try:
        with without_litert_chatter():
            native = backend.load_delegate(library, options)
    except ValueError as exc:
        said = " ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
        which = f"as '{device}'" if device else "on USB or PCIe"
        raise EdgeTpuNoDevice(f"no Edge TPU answers {which}: {library} loaded but found no device"
                              f"{f' ({said})' if said else ''}. Plug the Coral in (USB 3 port), check that lsusb "
                              "lists 1a6e:089a or 18d1:9302 (PCIe: /dev/apex_0), and that the service may open it "
                              f"(install.sh --coral sets the udev rule and group){_device_hint(device)}") from None
    return EdgeTpuDelegate(library, device, native)


def _device_hint(device: str) -> str:
    return "; or leave edgetpu_device empty for the first device found" if device else ""


def explain_load_failure(model: Path, message: str) -> PidetectError:
    """An interpreter with the delegate that could not be built: which of the known causes, in plain words."""
    if "custom op handler" in message or "EdgeTpuDelegateForCustomOp" in message:
        return EdgeTpuMismatch(
            f"{model}: the installed {library_name()} was built for another TensorFlow Lite version than the "
            f"running one and cannot run this model ({message}). Install a libedgetpu built against the same "
            "TensorFlow Lite version as the backend (docs/accelerators-and-cameras.md: which build works), or set "
            "accelerator = cpu")
    if CUSTOM_OP.decode() in message:
        return EdgeTpuMismatch(
            f"{model}: the Edge TPU delegate loaded but did not take the model's Edge TPU op ({message}); the "
            f"installed {library_name()} does not match this model or this TensorFlow Lite "
            "(docs/accelerators-and-cameras.md), or set accelerator = cpu")
    return ConfigError(f"{model}: cannot load this model on the Edge TPU: {message}")
