"""The calibrating quantizer, by whichever name it is installed: litert-quantizer, or its old name
ai-edge-quantizer (the same API). Used by `quantize` and by the accuracy-budget search."""

from __future__ import annotations


def quantizer_api():
    """(quantizer, recipe, validation metric enum) of whichever quantizer package is installed."""
    try:
        from litert_quantizer import quantizer, recipe
        from litert_quantizer.utils.validation_utils import ValidationErrorMetric
    except ImportError:
        try:
            from ai_edge_quantizer import quantizer, recipe
            from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric
        except ImportError:
            from ..errors import UnavailableError

            raise UnavailableError("calibrated quantization needs litert-quantizer: pip install "
                                   "\"pidetect[quantize]\" (not needed by the daemon, nor for uint8 models)") from None
    return quantizer, recipe, ValidationErrorMetric
