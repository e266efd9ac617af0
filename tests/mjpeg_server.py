"""A local MJPEG-over-HTTP camera stand-in that tests can stop and restart on the same port."""

import http.server
import socket
import threading
import time

import cv2


class MjpegCamera:
    def __init__(self, images, fps=15.0, port=0, first_frame_delay=0.0):
        self.jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in images]
        self.fps, self.first_frame_delay = fps, first_frame_delay
        self.port = port
        self.httpd = None
        self.connections = []
        self.running = threading.Event()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def set_images(self, images):
        self.jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in images]

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                outer.connections.append(self.connection)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                if outer.first_frame_delay:
                    time.sleep(outer.first_frame_delay)
                index = 0
                try:
                    while outer.running.is_set():
                        jpeg = outer.jpegs[index % len(outer.jpegs)]
                        index += 1
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        time.sleep(1.0 / outer.fps)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.port = self.httpd.server_address[1]
        self.running.set()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        """Like a camera unplugged: stop serving and cut every open stream."""
        self.running.clear()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections = []
