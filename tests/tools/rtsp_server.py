#!/usr/bin/python3
"""A local RTSP camera stand-in: serves one JPEG picture as a 10 fps RTP/JPEG stream, like a camera
pointed at a still scene (Debian's python3-gi + gst-rtsp-server).

usage: /usr/bin/python3 rtsp_server.py PICTURE.jpg PORT      -> rtsp://127.0.0.1:PORT/cam
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

clip, port = sys.argv[1], sys.argv[2]
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# multifilesrc repeats the picture with steady 10 fps timestamps; jpegenc makes baseline JPEG as RTP/JPEG
# expects; rtpjpegpay packs it
factory.set_launch(f"( multifilesrc location={clip} loop=true caps=image/jpeg,framerate=10/1 ! jpegdec "
                   f"! videoconvert ! jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
