"""The explorer: its JSON API with an HTTP client, malformed input of every kind (never a 5xx),
and the page itself in a real headless Chromium driven by Playwright."""

from __future__ import annotations

import base64
import io
import json
import random
import re
import shutil
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.explorer import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# README screenshots are refreshed with CNNLAB_SCREENSHOTS=1; otherwise they go to a temp dir
README_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "explorer"


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    import os

    folder = (
        README_SHOTS if os.environ.get("CNNLAB_SCREENSHOTS") else tmp_path_factory.mktemp("shots")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def app(runs_root, data_dir):
    return create_app([runs_root / "lenet", runs_root / "cifar"], str(data_dir))


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


def decode(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_runs_summary_and_samples(client, lenet):
    runs = client.get("/api/runs").json()
    assert [r["name"] for r in runs] == ["lenet", "cifar"]
    assert runs[0]["classes"][7] == "7" and runs[0]["input_size"] == 28
    table = client.get("/api/runs/lenet/summary").json()
    assert table["total_params"] == 61_706
    assert table["layers"][1]["formula"].startswith("(32 - 5 + 2*0) / 1 + 1 = 28")
    sample = client.get("/api/runs/lenet/sample/0").json()
    assert np.array(sample["pixels"]).shape == (1, 28, 28)
    assert sample["class"] == runs[0]["classes"][sample["label"]]


def test_analyze_cam_and_the_arithmetic_of_one_pixel(client):
    right = 0
    for index in range(5):  # real test images: the 93%-accurate LeNet gets nearly all
        sample = client.get(f"/api/runs/lenet/sample/{index}").json()
        result = client.post("/api/runs/lenet/analyze", json={"pixels": sample["pixels"]}).json()
        right += result["predicted"] == sample["label"]
    assert right >= 4
    assert abs(sum(p["p"] for p in result["probabilities"]) - 1) < 1e-5
    names = [layer["name"] for layer in result["layers"]]
    assert names[:3] == ["fit", "features.0", "features.1"]
    first = result["layers"][1]
    assert first["shape"] == [6, 28, 28] and first["count"] == 6
    assert decode(first["sprite"]).size == (6 * 28, 28)  # six 28x28 maps side by side
    cam = client.post("/api/runs/lenet/cam", json={"pixels": sample["pixels"], "class_index": 3})
    assert cam.status_code == 200 and cam.json()["class"] == "3"
    assert decode(cam.json()["overlay"]).size == (28, 28)
    one = client.post(
        "/api/runs/lenet/kernel",
        json={"pixels": sample["pixels"], "layer": "features.3", "channel": 5, "y": 4, "x": 6},
    ).json()
    assert np.array(one["kernel"]).shape == (6, 5, 5) == np.array(one["products"]).shape
    products = np.array(one["patch"]) * np.array(one["kernel"])
    assert np.allclose(products, one["products"], atol=1e-6)
    assert one["sum"] == pytest.approx(products.sum() + one["bias"], abs=1e-4)
    assert one["sum"] == pytest.approx(one["output"], abs=1e-4)  # the number in the map


def test_arithmetic_endpoint(client):
    query = {"n": 32, "kernel": 3, "padding": 1, "in_channels": 64, "out_channels": 128}
    ok = client.get("/api/arithmetic", params=query).json()
    assert ok["valid"] and ok["out"] == 32 and ok["formula"] == "(32 - 3 + 2*1) / 1 + 1 = 32"
    assert ok["params"] == 3 * 3 * 64 * 128 + 128 and ok["macs"] == 32 * 32 * 128 * 9 * 64
    bad = client.get("/api/arithmetic", params={"n": 5, "kernel": 7}).json()
    assert not bad["valid"] and "spans 7 pixels" in bad["problem"]
    assert client.get("/api/arithmetic", params={"n": 64, "kernel": 9, "stride": 4}).json()["out"]
    assert client.get("/api/arithmetic", params={"n": 0}).status_code == 422


def _png_bytes(size=(40, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb() -> bytes:
    """A valid PNG header claiming 100,000 x 100,000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_uploads_are_checked(client, data_dir):
    cat = (data_dir / "photos" / "chelsea.png").read_bytes()
    got = client.post("/api/runs/cifar/upload", files={"file": ("cat.png", cat, "image/png")})
    assert got.status_code == 200
    assert np.array(got.json()["pixels"]).shape == (3, 32, 32)
    assert got.json()["notes"] == ["resized 451x300 to 48x32, centre-cropped to 32x32"]
    gray = client.post("/api/runs/lenet/upload", files={"file": ("c.png", cat, "image/png")})
    assert "converted RGB to L" in gray.json()["notes"]
    # a phone's sideways pixels with an EXIF orientation tag: read as the browser shows them
    upright = Image.open(io.BytesIO(cat)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 8  # turn 90 degrees counter-clockwise to view
    sideways = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_270).save(sideways, "PNG", exif=exif.tobytes())
    turned = client.post(
        "/api/runs/cifar/upload", files={"file": ("s.png", sideways.getvalue(), "image/png")}
    )
    assert turned.json()["notes"] == got.json()["notes"]  # 451x300, as the upright one
    assert np.allclose(turned.json()["pixels"], got.json()["pixels"])
    cases = [
        (b"not an image at all", 400),
        (b"\x80\x04\x95" + b"pickle" * 10, 400),  # a pickle is just bytes that do not decode
        (_bomb(), 413),
        (b"\0" * (5 * 2**20 + 1), 413),
    ]
    for data, status in cases:
        response = client.post(
            "/api/runs/cifar/upload", files={"file": ("x.png", data, "image/png")}
        )
        assert response.status_code == status, (status, response.text)
        assert "Traceback" not in response.text and "detail" in response.json()


@pytest.mark.parametrize(
    "name", ["nope", "..", "..%2Flenet", "%2e%2e", "lenet%2F..%2Fcifar", "%2Fetc%2Fpasswd"]
)
def test_run_names_are_only_looked_up(client, name):
    response = client.get(f"/api/runs/{name}/summary")
    assert response.status_code == 404


def test_malformed_requests_never_give_a_server_error(client):
    rng = random.Random(0)
    values = [
        None,
        "x",
        -1,
        1e9,
        float("nan"),
        [],
        [[]],
        [[1, 2], [3]],
        {"a": 1},
        True,
        [[0] * 28] * 28,
        [[[300] * 28] * 28],
        [[[0] * 32] * 32] * 3,
    ]
    bodies = []
    for _ in range(150):
        body = {
            k: rng.choice(values)
            for k in ("pixels", "layer", "channel", "y", "x", "class_index")
            if rng.random() < 0.7
        }
        bodies.append(body)
    bodies += ["not json", "[1, 2]", "{", ""]
    for body in bodies:
        for endpoint in ("analyze", "cam", "kernel"):
            for run in ("lenet", "cifar"):
                kwargs = {"content": body} if isinstance(body, str) else {"json": body}
                if isinstance(body, dict):
                    kwargs = {
                        "content": json.dumps(body, allow_nan=True),
                        "headers": {"content-type": "application/json"},
                    }
                response = client.post(f"/api/runs/{run}/{endpoint}", **kwargs)
                assert response.status_code < 500, (endpoint, body, response.text)
    schema = client.get("/openapi.json").json()
    assert {"/api/runs", "/api/runs/{name}/analyze", "/api/runs/{name}/kernel"} <= set(
        schema["paths"]
    )


def test_request_bodies_are_capped_before_they_are_parsed(client):
    from cnnlab.explorer.app import MAX_BODY_BYTES
    from cnnlab.explorer.uploads import body_too_large, upload_too_large

    huge = b'{"pixels": [' + b"0," * (16 * 2**20) + b"0]}"  # 32 MB of JSON
    declared = client.post(
        "/api/runs/lenet/analyze", content=huge, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413, declared.text[:200]
    assert declared.json()["detail"] == body_too_large(MAX_BODY_BYTES)
    assert f"larger than {MAX_BODY_BYTES // 2**20} MiB" in declared.json()["detail"]

    def streamed():  # chunked, no Content-Length: counted as it arrives
        yield b'{"pixels": ['
        for _ in range(MAX_BODY_BYTES // 2**18 + 1):
            yield b"0," * 2**17
        yield b"0]}"

    chunked = client.post(
        "/api/runs/lenet/analyze", content=streamed(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413 and "larger than" in chunked.json()["detail"]
    upload = client.post(
        "/api/runs/lenet/upload", files={"file": ("x.png", b"\0" * MAX_BODY_BYTES)}
    )
    assert upload.status_code == 413 and upload.json()["detail"] == upload_too_large()
    # a body under the cap still reaches the endpoint (which finds the shape wrong)
    fine = client.post("/api/runs/lenet/analyze", json={"pixels": [[0] * 28] * 27})
    assert fine.status_code == 422 and "shape [1, 27, 28]" in fine.json()["detail"]


def test_docs_are_served_from_this_server_only(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/docs.js" in assets and "/openapi.json" in assets
    for text in [page.text] + [client.get(a).text for a in assets if a.startswith("/static/")]:
        assert not re.search(r"https?:|//[a-z]", text), "an external URL"
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404  # FastAPI's ReDoc page loads from a CDN


# ----------------------------------------------------------------- threads and torch.fx tracing


@pytest.fixture
def slow_tracing(monkeypatch):
    """Widen the race window: every module the tracer meets costs a millisecond with the GIL
    released (as when a busy machine preempts the tracing thread), so calls in other threads
    land inside traces often instead of by luck."""
    import importlib

    module = importlib.import_module("cnnlab.inspect.summary")
    original = module._LeafTracer.is_leaf_module

    def is_leaf_module(self, m, qualname):
        time.sleep(0.001)
        return original(self, m, qualname)

    monkeypatch.setattr(module._LeafTracer, "is_leaf_module", is_leaf_module)


def test_summary_and_analyze_at_once_never_fail(app, slow_tracing):
    """/summary traces the model with torch.fx, which swaps nn.Module.__call__ for the whole
    process meanwhile; /analyze calls from other threads must never run into it (before the
    fix, 1% of a 16-thread mix answered 500)."""
    rng = np.random.default_rng(0)
    bodies = {
        "lenet": {"pixels": rng.integers(0, 256, (1, 28, 28)).tolist()},
        "cifar": {"pixels": rng.integers(0, 256, (3, 32, 32)).tolist()},
    }

    def one(i: int) -> tuple[str, int]:
        run = ("lenet", "cifar")[i % 2]
        if (i // 2) % 2 == 0:
            return "summary", local.get(f"/api/runs/{run}/summary").status_code
        return "analyze", local.post(f"/api/runs/{run}/analyze", json=bodies[run]).status_code

    with TestClient(app, raise_server_exceptions=False) as local, ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(one, range(192)))
    assert {kind for kind, _ in outcomes} == {"summary", "analyze"}
    assert [o for o in outcomes if o[1] != 200] == []


def test_tracing_excludes_model_calls_in_other_threads(runs_root, slow_tracing):
    """The same race without HTTP in between: two threads build layer tables (a torch.fx
    trace, then a run of the traced graph) while two others call other copies of the models
    (a model's own calls and its summary are kept apart by the explorer's lock per run)."""
    from cnnlab._tracing import model_call
    from cnnlab.inspect.summary import summary
    from cnnlab.runs.load import load_run

    shapes = {"1x28x28": "lenet", "3x32x32": "cifar"}
    traced = {shape: load_run(runs_root / run).model for shape, run in shapes.items()}
    called = {shape: load_run(runs_root / run).model for shape, run in shapes.items()}
    errors: list[str] = []
    counts = {"traces": 0, "calls": 0}
    stop = time.perf_counter() + 2.0

    def trace(shape: str) -> None:
        params = sum(p.numel() for p in traced[shape].parameters())
        while time.perf_counter() < stop:
            try:
                assert summary(traced[shape], shape).total_params == params
            except Exception as error:  # any failure counts
                errors.append(f"trace: {error!r}")
            counts["traces"] += 1

    def call(shape: str) -> None:
        x = torch.zeros(1, *map(int, shape.split("x")))
        while time.perf_counter() < stop:
            try:
                with model_call(), torch.no_grad():
                    assert called[shape](x).shape == (1, 10)
            except Exception as error:
                errors.append(f"call: {error!r}")
            counts["calls"] += 1

    threads = [threading.Thread(target=f, args=(shape,)) for f in (trace, call) for shape in shapes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors[:3] == [] and counts["traces"] >= 4 and counts["calls"] >= 4, counts


def test_the_tracing_lock_is_reentrant_and_a_waiting_trace_goes_first():
    from cnnlab import _tracing as T

    with T.tracing(), T.model_call(), T.tracing():
        pass  # a model call inside a trace (one thread): no deadlock
    order: list[str] = []

    def trace() -> None:
        with T.tracing():
            order.append("trace")

    def call() -> None:
        with T.model_call():
            order.append("later call")

    with T.model_call():
        tracer = threading.Thread(target=trace)
        tracer.start()
        deadline = time.perf_counter() + 10
        while not T._LOCK._tracers_waiting and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert T._LOCK._tracers_waiting == 1  # the trace waits for this call ...
        with T.model_call():  # ... and a nested call in this thread still goes on
            order.append("nested call")
        caller = threading.Thread(target=call)  # a new call waits behind the trace
        caller.start()
        time.sleep(0.2)
        assert order == ["nested call"]
    for thread in (tracer, caller):
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert order == ["nested call", "trace", "later call"]


# ------------------------------------------------------------------------- in a real browser


@pytest.fixture(scope="module")
def server(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    for _ in range(100):
        if instance.started:
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM}; .ci/run installs it"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield instance
        instance.close()


def test_draw_a_digit_and_see_inside(server, browser, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(server)
    page.wait_for_selector("#summary tr:nth-child(3)")
    box = page.locator("#draw").bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 50)
    page.mouse.down()
    for step in range(20):  # a vertical stroke: a "1"
        page.mouse.move(x + step * 0.5, box["y"] + 50 + step * 9)
    page.mouse.up()
    page.wait_for_function("document.querySelector('#prediction').dataset.predicted")
    assert page.locator("#prediction").get_attribute("data-predicted") == "1"
    assert page.locator("#overview .layer").count() >= 8
    page.wait_for_selector("#overview .layer[data-layer='features.0'] canvas")
    page.locator("#overview .layer[data-layer='features.0'] canvas").first.click()
    page.locator("#kernel-map img").click(position={"x": 140, "y": 140})  # scrolls to it
    page.wait_for_selector("#kernel-sum")
    text = page.locator("#kernel-sum").text_content()
    assert "sum of 25 products" in text
    shown_sum = float(text.split("= ")[1].split(";")[0])
    held = float(text.rsplit(" ", 1)[1])
    assert shown_sum == pytest.approx(held, abs=1e-3)
    page.screenshot(path=str(shots / "digit.png"), full_page=True)
    assert (shots / "digit.png").stat().st_size > 50_000
    page.close()


def test_upload_the_cat_and_see_grad_cam(server, browser, data_dir, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(server)
    page.wait_for_selector("#run option", state="attached")
    page.select_option("#run", "cifar")
    page.wait_for_function("document.querySelector('#run-info').textContent.startsWith('3x32')")
    page.set_input_files("#upload", str(data_dir / "photos" / "chelsea.png"))
    page.wait_for_function(
        "document.querySelector('#cam-overlay').complete && "
        "document.querySelector('#cam-overlay').naturalWidth === 32"
    )
    assert (
        "resized 451x300 to 48x32, centre-cropped to 32x32"
        in page.locator("#input-note").text_content()
    )
    assert page.locator("#cam-note").text_content().startswith("class ")
    page.fill("#pg-n", "9")
    page.fill("#pg-k", "4")
    page.fill("#pg-s", "2")
    page.wait_for_function("document.querySelector('#pg-formula').textContent.includes('3.5 -> 3')")
    page.fill("#pg-cin", "3")
    page.wait_for_function(
        "document.querySelector('#pg-counts').textContent.includes('4*4*3*8 + 8 = 392')"
    )
    page.screenshot(path=str(shots / "cat.png"), full_page=True)
    page.close()


def test_the_api_docs_page_renders_offline(server, browser):
    page = browser.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server) else elsewhere.append(r.url))
    page.goto(f"{server}/docs")
    page.wait_for_selector("#operations[data-count]")
    assert int(page.locator("#operations").get_attribute("data-count")) >= 8
    analyze = page.locator(".operation[data-path='/api/runs/{name}/analyze']")
    assert "Class probabilities" in analyze.text_content()
    arithmetic = page.locator(".operation[data-path='/api/arithmetic']")
    arithmetic.locator("input[placeholder='n']").fill("32")
    arithmetic.locator("input[placeholder='kernel']").fill("3")
    arithmetic.locator("button").click()  # "try it"
    page.wait_for_function(
        "document.querySelector(\".operation[data-path='/api/arithmetic'] .answer\")"
        ".textContent.startsWith('200')"
    )
    assert '"out":30' in arithmetic.locator(".answer").text_content()
    assert elsewhere == []
    page.close()
