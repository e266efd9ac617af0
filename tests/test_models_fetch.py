"""`pidetect models fetch/verify`: real HTTP from a local server standing in for the upstream host."""

import hashlib
import http.server
import threading

import pytest

from conftest import run_pidetect
from pidetect.errors import UnavailableError
from pidetect.inference.model_paths import Manifest, ModelFile, load_manifest
from pidetect.models.fetch import fetch_models, npm_source, url_source, verify_models

FILES = {"a.tflite": b"TFL3 pretend model bytes" * 100, "labels.txt": b"0  person\n1  cat\n"}


def manifest_for(files):
    return Manifest("a.tflite", "labels.txt",
                    tuple(ModelFile(n, len(b), hashlib.sha256(b).hexdigest(), n) for n, b in files.items()), ())


class Server:
    """Serves `content` by file name and counts requests."""

    def __init__(self, content):
        self.content, self.requests = content, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append(name)
                body = outer.content.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/{{file}}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def good_server():
    server = Server(FILES)
    yield server
    server.close()


def closed_port_url():
    from pidetect.tools.measure import free_port

    return f"http://127.0.0.1:{free_port()}/{{file}}"


def test_fetch_places_verified_files(tmp_path, good_server):
    report = fetch_models(tmp_path, manifest_for(FILES), [("good", url_source(good_server.url))])
    assert report.source == "good" and sorted(report.placed) == sorted(FILES)
    for name, body in FILES.items():
        assert (tmp_path / name).read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)  # no temp files left


def test_checksum_mismatch_leaves_nothing_behind(tmp_path):
    tampered = Server({"a.tflite": FILES["a.tflite"][:-1] + b"X", "labels.txt": FILES["labels.txt"]})
    try:
        with pytest.raises(UnavailableError) as failure:
            fetch_models(tmp_path, manifest_for(FILES), [("tampered", url_source(tampered.url))])
    finally:
        tampered.close()
    message = str(failure.value)
    assert "a.tflite: SHA256" in message and "does not match" in message and "tampered" in message
    assert list(tmp_path.iterdir()) == []  # not even the good labels file: a source is all or nothing


def test_unreachable_source_falls_back_to_next(tmp_path, good_server):
    lines = []
    report = fetch_models(tmp_path, manifest_for(FILES),
                          [("upstream", url_source(closed_port_url(), timeout=3)), ("mirror", url_source(good_server.url))],
                          say=lines.append)
    assert report.source == "mirror"
    assert len(report.failures) == 1 and report.failures[0].startswith("upstream: http://127.0.0.1:")
    assert any(line.startswith("failed   upstream") for line in lines)
    assert verify_models(tmp_path, manifest_for(FILES)) == [("a.tflite", "ok"), ("labels.txt", "ok")]


def test_already_present_verified_file_is_not_downloaded_again(tmp_path, good_server):
    (tmp_path / "a.tflite").write_bytes(FILES["a.tflite"])
    report = fetch_models(tmp_path, manifest_for(FILES), [("good", url_source(good_server.url))])
    assert good_server.requests == ["labels.txt"]
    assert report.already_present == ["a.tflite"] and report.placed == ["labels.txt"]
    good_server.requests.clear()
    fetch_models(tmp_path, manifest_for(FILES), [("good", url_source(good_server.url))])
    assert good_server.requests == []


def test_corrupt_present_file_is_replaced(tmp_path, good_server):
    (tmp_path / "a.tflite").write_bytes(b"half a download")
    assert verify_models(tmp_path, manifest_for(FILES))[0][1].startswith("corrupt")
    fetch_models(tmp_path, manifest_for(FILES), [("good", url_source(good_server.url))])
    assert (tmp_path / "a.tflite").read_bytes() == FILES["a.tflite"]


def test_npm_source_without_npm_says_so(tmp_path):
    fetch = npm_source("@scope/pkg@1.0.0", "package/x.zip", "fs/", npm="npm-not-installed-here")
    with pytest.raises(UnavailableError, match="'npm-not-installed-here' is not installed"):
        fetch_models(tmp_path, manifest_for(FILES), [("npm", fetch)])
    assert list(tmp_path.iterdir()) == []


def test_shipped_manifest_matches_models_md():
    manifest = load_manifest()
    sums = {f.name: f.sha256 for f in manifest.files}
    assert sums["mobilenet_ssd_v2_coco_quant_postprocess.tflite"].startswith("7046f31a72ec")
    assert sums["coco_labels.txt"].startswith("93f235896748")
    assert [s["kind"] for s in manifest.sources] == ["url", "npm"]  # upstream first, registry mirror second


def test_cli_verify_and_list(tmp_path, model_paths):
    done = run_pidetect("models", "verify", "--dest", model_paths[0].parent)
    assert done.returncode == 0 and done.stdout.count("ok ") == 4, done.stdout  # 3 fetched, 1 made (int8)
    broken = tmp_path / "m"
    broken.mkdir()
    (broken / "coco_labels.txt").write_text("0 person\n")
    done = run_pidetect("models", "verify", "--dest", broken)
    assert done.returncode == 78
    assert "FAIL" in done.stdout and "missing" in done.stdout and "corrupt" in done.stdout
    assert "4 model file(s)" in done.stderr
    listing = run_pidetect("models", "list", "--dest", model_paths[0].parent)
    assert listing.returncode == 0 and "Edge TPU" in listing.stdout


def test_cli_fetch_is_quick_and_idempotent_when_present(model_paths):
    done = run_pidetect("models", "fetch", "--dest", model_paths[0].parent, timeout=30)
    assert done.returncode == 0
    assert done.stdout.count("already present and verified") == 3
