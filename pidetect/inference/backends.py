"""Which TFLite interpreter to use: ai_edge_litert (LiteRT) -> tflite_runtime -> tensorflow.lite.

The first importable one wins unless the user names one; the name and version go into the logs
and into bench, so a figure always says what produced it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from ..errors import UnavailableError

BACKENDS = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow.lite", "tensorflow.lite"),
)
INSTALL_HINT = ("no TFLite backend is installed: run 'pip install ai-edge-litert' (recommended), "
                "or 'pip install \"pidetect[tflite]\"' for tflite-runtime 2.14 (numpy<2)")


@dataclass(frozen=True)
class Backend:
    name: str
    version: str
    interpreter_class: type
    load_delegate: Optional[Callable] = None  # external delegates (the Edge TPU); None where the backend has none


def resolve_backend(preferred: str = "auto", import_module: Callable = importlib.import_module) -> Backend:
    """The first importable backend (or exactly `preferred`), with its version for logs and bench."""
    candidates = [b for b in BACKENDS if preferred in ("auto", b[0])]
    if not candidates:
        raise UnavailableError(f"unknown backend {preferred!r}; choose auto, "
                               + ", ".join(b[0] for b in BACKENDS))
    errors = []
    for name, module_name in candidates:
        try:
            module = import_module(module_name)
        except Exception as exc:  # a broken install (e.g. numpy ABI mismatch) is as unusable as a missing one
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        top = import_module(name.split(".")[0])
        version = getattr(top, "__version__", None) or _dist_version(name)
        load_delegate = getattr(module, "load_delegate", None) or getattr(
            getattr(module, "experimental", None), "load_delegate", None)  # tensorflow.lite keeps it there
        return Backend(name, version, module.Interpreter, load_delegate)
    detail = "; ".join(errors)
    if preferred != "auto":
        others = [name for name, module_name in BACKENDS if name != preferred and _importable(module_name,
                                                                                               import_module)]
        also = (f"; installed: {', '.join(others)} (use --backend auto or --backend {others[0]})" if others
                else f". {INSTALL_HINT}")
        raise UnavailableError(f"backend {preferred} is not installed or not usable ({detail}){also}")
    raise UnavailableError(f"{INSTALL_HINT} (tried: {detail})")


def _importable(module_name: str, import_module: Callable) -> bool:
    try:
        import_module(module_name)
    except Exception:
        return False
    return True


def _dist_version(module: str) -> str:
    from importlib import metadata

    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime",
            "tensorflow.lite": "tensorflow"}[module]
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


# What TFLite's C++ logger prints at INFO for every interpreter: nothing a user can act on.
CHATTER = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "INFO: Initialized TensorFlow Lite runtime.")


@contextlib.contextmanager
def without_litert_chatter() -> Iterator[None]:
    """Run the block with the process's stderr (fd 2) caught in a file; then write back all but CHATTER.

    Why: LiteRT's C++ logger writes straight to fd 2, past Python's sys.stderr, and offers Python no
    switch; its INFO line appeared in every `detect` output and in the journal. Warnings and errors it
    prints (and anything another thread wrote meanwhile) are passed on unchanged, in order.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (a closed stderr): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", "replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if line.rstrip("\r\n") not in CHATTER)
            if kept:
                try:
                    os.write(2, kept.encode("utf-8"))
                except OSError:
                    pass
