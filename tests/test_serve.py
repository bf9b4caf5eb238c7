"""The HTTP service: every endpoint, every limit and error path, and the `digitrec serve` verb."""
from __future__ import annotations

import asyncio
import gc
import io
import json
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageOps

from digitrec.cli import build_parser, main
from digitrec.serve import ServeSettings, create_app
from digitrec.serve import app as app_module

BACKEND = "torch"  # fastest to load; the browser test runs the CLI's default backend


# ---- a model and images ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def model_name(served_model) -> str:
    return served_model


@pytest.fixture(scope="session")
def recognizer(model_name):
    from digitrec.read.recognizer import Recognizer

    return Recognizer.load(model_name, backend=BACKEND)


@pytest.fixture(scope="session")
def digits(mnist_dir) -> tuple[np.ndarray, list[int]]:
    """The first ten MNIST test digits (white on black, uint8) and their labels: 7 2 1 0 4 1 4 9 5 9."""
    from digitrec.data.mnist import load_mnist

    test = load_mnist(mnist_dir, fetch=False, log=lambda _m: None)["test"]
    return test.images[:10].numpy(), test.labels[:10].tolist()


def sheet(images: np.ndarray, scale: int = 3) -> np.ndarray:
    """Digits side by side, dark ink on white paper, as a person would photograph or scan them."""
    tiles = [np.asarray(Image.fromarray(255 - d).resize((28 * scale, 28 * scale), Image.BILINEAR)) for d in images]
    return np.pad(np.concatenate(tiles, axis=1), 12, constant_values=255)


def encode(array: np.ndarray | Image.Image, fmt: str = "PNG", **kw) -> bytes:
    img = array if isinstance(array, Image.Image) else Image.fromarray(array)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def seven(digits) -> bytes:
    return encode(sheet(digits[0][:1]))


@pytest.fixture(scope="session")
def number(digits) -> bytes:
    """'721' as one PNG."""
    return encode(sheet(digits[0][:3]))


def huge_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid, all-black 1-bit PNG of width x height: a decompression bomb of ~110 KB."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = (b"\x00" * (1 + (width + 7) // 8)) * 1000
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(rows) for _ in range(height // 1000)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


# ---- apps -----------------------------------------------------------------------------------------
def make_client(recognizer, **settings) -> TestClient:
    app = create_app(ServeSettings(backend=BACKEND, **settings), recognizer=recognizer)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(recognizer, model_name):
    with make_client(recognizer, model=model_name) as c:
        yield c


# ---- reading ----------------------------------------------------------------------------------------
def test_raw_body_answers_exactly_what_predict_json_prints(client, recognizer, seven):
    r = client.post("/v1/read", content=seven, headers={"content-type": "image/png"})
    assert r.status_code == 200
    assert r.json() == json.loads(json.dumps(recognizer.read(seven).to_dict()))
    assert r.json()["digits"] == "7"


def test_multipart_field_image_reads_a_number_left_to_right(client, number):
    r = client.post("/v1/read", files={"image": ("721.png", number, "image/png")})
    assert r.status_code == 200
    body = r.json()
    assert body["digits"] == "721" and body["confidence"] > 0.5
    xs = [item["box"][0] for item in body["items"]]
    assert xs == sorted(xs) and len(xs) == 3
    for item in body["items"]:
        assert len(item["probs"]) == 10 and abs(sum(item["probs"]) - 1) < 1e-3
        assert len(item["box"]) == 4 and item["box"][2] > 0 and item["box"][3] > 0


def test_numbers_one_under_another_come_back_row_by_row(client):
    # the page of tests/data/read made as line_robustness.py's rows2 pages are: a newline between the rows
    page = (Path(__file__).parent / "data" / "read" / "rows_381_179195.jpg").read_bytes()
    body = client.post("/v1/read", files={"image": ("rows.jpg", page, "image/jpeg")}).json()
    assert body["digits"] == "381\n179195" and len(body["items"]) == 9
    assert max(i["box"][1] for i in body["items"][:3]) < min(i["box"][1] for i in body["items"][3:])


def test_single_and_threshold_options_from_query_or_form(client, number, seven):
    one = client.post("/v1/read?single=true", content=number).json()
    assert len(one["items"]) == 1
    strict = client.post("/v1/read?threshold=1", content=seven).json()
    assert strict["digits"] == "" and "low confidence" in strict["reason"]
    form = client.post("/v1/read", files={"image": ("7.png", seven)}, data={"threshold": "1", "single": "true"})
    assert form.json()["digits"] == "" and len(form.json()["items"]) == 1
    for bad in ("/v1/read?threshold=2", "/v1/read?threshold=abc", "/v1/read?single=maybe"):
        r = client.post(bad, content=seven)
        assert r.status_code == 422 and r.json()["error"]
    r = client.post("/v1/read", files={"image": ("7.png", seven)}, data={"threshold": "-1"})
    assert r.status_code == 422 and "threshold" in r.json()["error"]


def test_rgba_canvas_png_with_transparent_background(client, digits):
    ink = sheet(digits[0][2:3])  # a "1": dark ink on white
    rgba = np.zeros((*ink.shape, 4), np.uint8)
    rgba[..., 3] = 255 - ink  # black strokes on a fully transparent canvas, as canvas.toBlob() exports
    r = client.post("/v1/read", files={"image": ("canvas.png", encode(rgba), "image/png")})
    assert r.status_code == 200 and r.json()["digits"] == "1"


def test_jpeg_exif_rotation_is_applied_before_reading(client, digits):
    upright = Image.fromarray(sheet(digits[0][:3]))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(upright.rotate(90, expand=True), "JPEG", quality=92, exif=exif)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == upright.size
    body = client.post("/v1/read", content=data, headers={"content-type": "image/jpeg"}).json()
    assert body["digits"] == "721"
    assert all(item["box"][0] + item["box"][2] <= upright.width for item in body["items"])


def test_batch_answers_each_image_in_order_and_isolates_failures(client, seven, number):
    files = [("images", ("a.png", seven)), ("images", ("notes.txt", b"not an image")),
             ("images", ("b.png", number)), ("images", ("empty.png", b""))]
    r = client.post("/v1/read/batch", files=files)
    assert r.status_code == 200
    res = r.json()["results"]
    assert [e["index"] for e in res] == [0, 1, 2, 3]
    assert [e["name"] for e in res] == ["a.png", "notes.txt", "b.png", "empty.png"]
    assert res[0]["digits"] == "7" and res[2]["digits"] == "721"
    assert res[1]["status"] == 422 and "not an image" in res[1]["error"]
    assert res[3]["status"] == 422 and "empty" in res[3]["error"]


def test_batch_needs_multipart_files_and_caps_their_number(recognizer, seven):
    with make_client(recognizer, max_batch=2) as c:
        assert c.post("/v1/read/batch", content=seven).status_code == 422
        assert "no files" in c.post("/v1/read/batch", files={"single": (None, "true")}).json()["error"]
        r = c.post("/v1/read/batch", files=[("images", (f"{i}.png", seven)) for i in range(3)])
        assert r.status_code == 413 and "files" in r.json()["error"].lower()
        r = c.post("/v1/read", files=[("image", (f"{i}.png", seven)) for i in range(2)])
        assert r.status_code == 422 and "/v1/read/batch" in r.json()["error"]


# ---- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["zero-byte body", "text file", "truncated png", "no image field", "bad multipart"])
def test_undecodable_or_empty_input_is_422_with_a_reason(client, number, case):
    sent = {
        "zero-byte body": dict(content=b""),
        "text file": dict(files={"image": ("notes.txt", b"hello, this is text\n" * 20, "text/plain")}),
        "truncated png": dict(content=number[: len(number) // 2]),
        "no image field": dict(files={"photo": ("x.png", number)}),
        "bad multipart": dict(content=b"--xyz\r\ngarbage",
                              headers={"content-type": "multipart/form-data; boundary=xyz"}),
    }[case]
    r = client.post("/v1/read", **sent)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    expected = {"zero-byte body": "empty", "text file": "not an image", "truncated png": "request body",
                "no image field": "'image'", "bad multipart": "multipart"}[case]
    assert expected in error
    assert "Traceback" not in r.text


def test_30000_by_30000_png_is_refused_before_decoding(client):
    bomb = huge_png()
    assert len(bomb) < 10 * 1024 * 1024  # it passes the body limit: only the pixel check can stop it
    start = time.perf_counter()
    r = client.post("/v1/read", content=bomb, headers={"content-type": "image/png"})
    assert time.perf_counter() - start < 2.0
    assert r.status_code == 413 and "900,000,000 pixels" in r.json()["error"]
    batch = client.post("/v1/read/batch", files=[("images", ("bomb.png", bomb))]).json()["results"]
    assert batch[0]["status"] == 413


def test_pixel_limit_is_configurable(recognizer, seven):
    with make_client(recognizer, max_pixels=100) as c:
        r = c.post("/v1/read", content=seven)
    assert r.status_code == 413 and "limit of 100" in r.json()["error"]


def test_body_over_the_limit_is_413_with_or_without_a_length(recognizer, seven):
    assert ServeSettings().max_body_bytes == 10 * 1024 * 1024
    with make_client(recognizer, max_body_bytes=len(seven) + 10) as c:
        assert c.post("/v1/read", content=seven).status_code == 200
        r = c.post("/v1/read", content=seven + b"\0" * 100)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        chunked = c.post("/v1/read", content=iter([seven, b"\0" * 100]))  # no Content-Length
        assert chunked.status_code == 413


def test_default_body_limit_refuses_eleven_megabytes(client):
    r = client.post("/v1/read", content=b"\0" * (11 * 1024 * 1024))
    assert r.status_code == 413 and "10,485,760" in r.json()["error"]


def test_wrong_method_is_405_and_unknown_path_404_as_json(client):
    r = client.get("/v1/read")
    assert r.status_code == 405 and "POST" in r.headers["allow"] and r.json()["error"]
    r = client.delete("/healthz")
    assert r.status_code == 405
    r = client.post("/v1/nothing", content=b"x")
    assert r.status_code == 404 and "/v1/nothing" in r.json()["error"]


class Spy:
    """Wraps a recognizer: counts reads running at once, notes any read on the event loop, can fail."""

    def __init__(self, inner, delay: float = 0.0, fail: bool = False) -> None:
        self.inner, self.delay, self.fail = inner, delay, fail
        self.active = self.peak = self.calls = 0
        self.on_event_loop = False
        self.lock = threading.Lock()

    def classify(self, batch):
        return self.inner.classify(batch)

    def read(self, image, **kw):
        try:
            asyncio.get_running_loop()
            self.on_event_loop = True
        except RuntimeError:
            pass
        with self.lock:
            self.calls += 1
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            if self.fail:
                raise RuntimeError("boom: /secret/path/model.py line 42")
            return self.inner.read(image, **kw)
        finally:
            with self.lock:
                self.active -= 1


def test_an_internal_error_is_500_without_a_traceback_and_the_worker_lives_on(recognizer, seven):
    spy = Spy(recognizer, fail=True)
    with make_client(spy) as c:
        r = c.post("/v1/read", content=seven)
        assert r.status_code == 500 and r.json() == {"error": "internal error; the server log has the details"}
        assert "secret" not in r.text and "Traceback" not in r.text
        batch = c.post("/v1/read/batch", files=[("images", ("a.png", seven))]).json()["results"]
        assert batch[0]["status"] == 500 and "secret" not in batch[0]["error"]
        spy.fail = False
        assert c.post("/v1/read", content=seven).json()["digits"] == "7"


def test_reads_run_concurrently_off_the_event_loop_on_one_shared_recognizer(recognizer, seven):
    spy = Spy(recognizer, delay=0.2)
    with make_client(spy, threads=4) as c, ThreadPoolExecutor(8) as pool:
        start = time.perf_counter()
        answers = list(pool.map(lambda _: c.post("/v1/read", content=seven).json()["digits"], range(8)))
        took = time.perf_counter() - start
    assert answers == ["7"] * 8
    assert not spy.on_event_loop
    assert spy.calls == 8 and 2 <= spy.peak <= 4  # shared, concurrent, and bounded by `threads`
    assert took < 8 * 0.2


def test_model_is_loaded_once_at_start_up_not_per_request(recognizer, seven, monkeypatch):
    loads = []
    monkeypatch.setattr(app_module, "load_recognizer", lambda s: loads.append(s.model) or recognizer)
    app = create_app(ServeSettings(model="somemodel", backend=BACKEND))
    c = TestClient(app)
    assert c.get("/readyz").status_code == 503  # no start-up yet: not ready, nothing loaded
    assert c.post("/v1/read", content=seven).status_code == 503
    assert loads == []
    with c:
        assert loads == ["somemodel"]
        for _ in range(3):
            assert c.post("/v1/read", content=seven).status_code == 200
    assert loads == ["somemodel"]


# ---- API key ---------------------------------------------------------------------------------------
def test_api_key_guards_v1_only(recognizer, seven):
    with make_client(recognizer, api_key="s3cret") as c:
        assert c.post("/v1/read", content=seven).status_code == 401
        assert c.post("/v1/read", content=seven, headers={"x-api-key": "wrong"}).status_code == 401
        assert c.post("/v1/read", content=seven, headers={"x-api-key": "s3cret"}).status_code == 200
        assert c.post("/v1/read", content=seven, headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/v1/read/batch", files=[("images", ("a.png", seven))]).status_code == 401
        assert "API key" in c.post("/v1/read", content=seven).json()["error"]
        for path in ("/healthz", "/readyz", "/metrics", "/"):
            assert c.get(path).status_code == 200


def test_worker_settings_travel_in_the_environment_with_the_key_apart(monkeypatch):
    s = ServeSettings(model="m.pt", backend="torch", max_pixels=123, api_key="k")
    assert "k" not in json.loads(s.to_env()).values()
    monkeypatch.setenv(app_module.SETTINGS_ENV, s.to_env())
    monkeypatch.setenv(app_module.API_KEY_ENV, "from-env")
    back = ServeSettings.from_env()
    assert (back.model, back.backend, back.max_pixels, back.api_key) == ("m.pt", "torch", 123, "from-env")


# ---- health, metrics, docs, page -------------------------------------------------------------------
def test_start_up_freezes_what_it_loaded_out_of_the_garbage_collector(recognizer, monkeypatch):
    gc.unfreeze()
    monkeypatch.setattr(app_module, "load_recognizer", lambda s: recognizer)
    assert gc.get_freeze_count() == 0
    try:
        with TestClient(create_app(ServeSettings(model="m", backend=BACKEND))):
            assert gc.get_freeze_count() > 0  # the interpreter's, torch's and the model's objects
    finally:
        gc.unfreeze()  # leave the collector as the other tests expect it, pass or fail


def test_health_and_readiness(client, model_name):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "model": model_name, "backend": BACKEND}


def test_metrics_count_requests_by_status_with_latency_and_model(recognizer, seven, model_name):
    with make_client(recognizer, model=model_name) as c:
        c.post("/v1/read", content=seven)
        c.post("/v1/read", content=seven)
        c.post("/v1/read", content=b"")
        c.get("/no/such/page")
        text = c.get("/metrics").text
    assert 'digitrec_http_requests_total{method="POST",path="/v1/read",status="200"} 2' in text
    assert 'digitrec_http_requests_total{method="POST",path="/v1/read",status="422"} 1' in text
    assert 'digitrec_http_requests_total{method="GET",path="other",status="404"} 1' in text
    assert 'digitrec_http_request_duration_seconds_count{path="/v1/read"} 3' in text
    assert 'digitrec_http_request_duration_seconds_bucket{path="/v1/read",le="+Inf"} 3' in text
    assert f'digitrec_model_info{{model="{model_name}",backend="{BACKEND}"}} 1' in text
    assert "digitrec_model_ready 1" in text
    assert 'digitrec_images_total{outcome="read"} 2' in text


def test_docs_and_openapi_work_offline(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/read", "/v1/read/batch", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/read"]["post"]["requestBody"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_page_loads_its_own_assets_only(client):
    import re

    r = client.get("/")
    assert r.status_code == 200 and "<canvas" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert refs and not [u for u in refs if u.startswith(("http:", "https:", "//"))]
    for ref in [u for u in refs if u.startswith("/static/")]:
        asset = client.get(ref)
        assert asset.status_code == 200 and "https://" not in asset.text


# ---- the CLI verb -----------------------------------------------------------------------------------
def test_serve_verb_defaults_to_localhost(monkeypatch):
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.model, args.backend, args.workers) == ("127.0.0.1", 8000, "default", "auto", 1)
    assert args.max_body_mb == 10
    from digitrec.read.image import MAX_PIXELS

    assert ServeSettings().max_pixels == MAX_PIXELS  # never above what the reading pipeline itself accepts


def test_serve_verb_with_a_missing_model_exits_2_with_a_message(capsys, tmp_path):
    assert main(["serve", "--model", str(tmp_path / "nope.pt"), "--port", "1"]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_serve_on_a_port_already_taken_exits_2_with_a_message(capsys, model_name):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", model_name, "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err


def test_serve_with_two_workers_reads_with_the_key_from_the_environment(model_name, seven):
    from digitrec.serve.process import running_server

    args = ["--workers", "2", "--model", model_name, "--backend", BACKEND, "--log-level", "warning"]
    with running_server(args, timeout=90, env={"DIGITREC_API_KEY": "k2"}) as srv:
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(urllib.request.Request(srv.url + "/v1/read", data=seven), timeout=30)
        req = urllib.request.Request(srv.url + "/v1/read", data=seven, headers={"X-API-Key": "k2"})
        answers = [json.load(urllib.request.urlopen(req, timeout=30))["digits"] for _ in range(6)]
        assert answers == ["7"] * 6
