"""Displays show the overlaid frame: the HDMI framebuffer, an MJPEG web view, or a desktop window."""


class DisplayUnavailable(Exception):
    """This display cannot work here (no device, no GUI, port taken); it is dropped with an error record."""
