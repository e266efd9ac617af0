"""A real Mosquitto broker on 127.0.0.1 for the MQTT tests, and a subscriber that keeps what it hears."""

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pidetect.tools.measure import free_port


class Broker:
    def __init__(self, folder: Path, port: int = 0, users=None, tls: bool = False):
        if shutil.which("mosquitto") is None:
            pytest.skip("mosquitto not installed (apt-get install mosquitto mosquitto-clients)")
        self.folder, self.port, self.tls = folder, port or free_port(), tls
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot read files in pytest's 0700 folders
        if users:
            passwords = folder / "passwords"
            for number, (user, secret) in enumerate(users.items()):
                subprocess.run(["mosquitto_passwd", "-b"] + ([] if number else ["-c"]) + [str(passwords), user, secret],
                               check=True, capture_output=True)
            lines += [f"password_file {passwords}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if tls:
            self.ca = make_certificates(folder)
            lines += [f"cafile {self.ca}", f"certfile {folder / 'server.crt'}", f"keyfile {folder / 'server.key'}"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def make_certificates(folder: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 / localhost, made with openssl for this test only."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=pidetect test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.crt", "-days", "2", "-extfile", "san.ext")
    return folder / "ca.crt"


class Subscriber:
    """A paho subscriber to '#': (topic, payload, retained) in arrival order."""

    def __init__(self, port: int, username=None, password=None, ca=None):
        import paho.mqtt.client as paho

        self.messages = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        if username:
            self.client.username_pw_set(username, password)
        if ca:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("#", qos=1)
        self.client.on_message = self._message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, _client, _userdata, message):
        with self.lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def on(self, topic):
        with self.lock:
            return [payload for t, payload, _r in self.messages if t == topic]

    def wait_for(self, predicate, timeout=30.0, what="message"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.messages)):
                    return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; topics seen: "
                             f"{sorted({t for t, _p, _r in self.messages})[:30]}")

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()
