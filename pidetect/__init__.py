"""pidetect: an object-detection daemon for the Raspberry Pi (camera -> quantized SSD -> screen/journal)."""

__version__ = "0.1.0"
