"""The explorer's audit, the back end and /docs: uploads (one size limit, one list of formats,
transparency laid on white, the aspect ratio kept unless ``fit=squash``), long values never
echoed whole, unparseable bodies answered in one sentence, the report saying on how many test
images it counted (and its accuracy), the summary traced once per model, and the /docs page
(phone viewport, labels, contrast, ``code``, and try-it forms that start with accepted requests).
Fixtures come from test_explorer_ui.py."""
# ruff: noqa: F811  (the fixtures imported from test_explorer_ui are the tests' parameters)

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from test_explorer_ui import serious_axe_violations, ui_app, ui_browser, ui_client, ui_server  # noqa: F401

from cnnlab.explorer import create_app
from cnnlab.explorer.app import MAX_BODY_BYTES
from cnnlab.explorer.uploads import MAX_UPLOAD_BYTES, UPLOAD_FORMATS
from cnnlab.runs.load import predict, read_image
from cnnlab.runs.sources import load_source


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def upload(client, run, data: bytes, name="x.png", **kwargs):
    return client.post(f"/api/runs/{run}/upload", files={"file": (name, data)}, **kwargs)


# ------------------------------------------------------------------ 12: uploads and messages


def test_upload_limits_name_one_size_and_every_accepted_format(ui_client, data_dir):
    limit = f"{MAX_UPLOAD_BYTES // 2**20} MiB"
    just_over = upload(ui_client, "lenet", b"\0" * (MAX_UPLOAD_BYTES + 1))  # read by the endpoint
    far_over = upload(ui_client, "lenet", b"\0" * MAX_BODY_BYTES)  # stopped by the body cap
    for answer in (just_over, far_over):
        assert answer.status_code == 413
        assert limit in answer.json()["detail"] and "6 MiB" not in answer.json()["detail"]
    assert just_over.json() == far_over.json()
    named = ", ".join(UPLOAD_FORMATS[:-1]) + f" or {UPLOAD_FORMATS[-1]}"
    cat = Image.open(data_dir / "photos" / "chelsea.png")
    tiff = upload(ui_client, "cifar", encoded(cat, "TIFF"), "cat.tif")
    assert tiff.status_code == 415 and named in tiff.json()["detail"]
    garbage = upload(ui_client, "cifar", b"not an image at all")
    assert garbage.status_code == 400 and named in garbage.json()["detail"]
    assert "PNG or JPEG image" not in garbage.json()["detail"]
    for fmt in ("GIF", "BMP", "WEBP"):  # each format the message names is accepted
        answer = upload(ui_client, "cifar", encoded(cat.convert("RGB"), fmt), f"cat.{fmt}")
        assert answer.status_code == 200, (fmt, answer.text)
        assert np.array(answer.json()["pixels"]).shape == (3, 32, 32)


def test_a_long_value_is_echoed_as_a_short_prefix_with_its_length(ui_client):
    pixels = ui_client.get("/api/runs/lenet/sample/0").json()["pixels"]
    name = "a" * 10000
    cut = "'aaaaaaaaaaaa...' (10000 characters)"
    answers = [
        ui_client.post("/api/runs/lenet/cam", json={"pixels": pixels, "layer": name}),
        ui_client.post(
            "/api/runs/lenet/kernel",
            json={"pixels": pixels, "layer": name, "channel": 0, "y": 0, "x": 0},
        ),
        ui_client.post("/api/runs/lenet/cam", json={"pixels": pixels, "colormap": name}),
        ui_client.get(f"/api/runs/{name}/summary"),
    ]
    for answer in answers:
        detail = answer.json()["detail"]
        assert answer.status_code in (404, 422) and len(detail) < 400, detail[:200]
        assert "a" * 41 not in detail
    assert cut in answers[0].json()["detail"] and cut in answers[1].json()["detail"]
    assert "no run named 'aaaaaaaaaaaa...' (10000 characters)" in answers[3].json()["detail"]
    short = ui_client.post("/api/runs/lenet/cam", json={"pixels": pixels, "layer": "nope"})
    assert "'nope'" in short.json()["detail"]  # a short value is repeated as it is


def test_an_unparseable_body_is_answered_with_what_was_expected(ui_client):
    broken_form = ui_client.post(
        "/api/runs/lenet/upload",
        content=b"garbage",
        headers={"content-type": "multipart/form-data; boundary=xx"},
    )
    no_boundary = ui_client.post(
        "/api/runs/lenet/upload", content=b"abc", headers={"content-type": "multipart/form-data"}
    )
    for answer in (broken_form, no_boundary):
        detail = answer.json()["detail"]
        assert answer.status_code == 400 and 'the field "file"' in detail, detail
        assert "expected" in detail and "\n" not in detail
    not_utf8 = ui_client.post(
        "/api/runs/lenet/analyze",
        content=b'\xff\x80{"pixels": []}',
        headers={"content-type": "application/json"},
    )
    detail = not_utf8.json()["detail"]
    assert not_utf8.status_code == 400 and "There was an error parsing the body" not in detail
    assert "expected a JSON object" in detail


# ------------------------------------------------------------------ 12: report and run list


def test_the_report_says_on_how_many_images_and_their_accuracy(runs_root, data_dir, monkeypatch):
    from cnnlab.explorer import report as report_module

    monkeypatch.setattr(report_module, "REPORT_IMAGES", 300)
    client = TestClient(create_app([runs_root / "lenet"], str(data_dir)))
    told = client.get("/api/runs/lenet/report").json()
    lenet = load_source(str(runs_root / "lenet"))
    test = lenet.test_split(str(data_dir))
    right = predict(lenet, test.images[:300]).argmax(1) == test.labels[:300]
    assert (told["images"], told["test_images"]) == (300, len(test.labels)) == (300, 2000)
    assert told["accuracy"] == pytest.approx(float(right.float().mean()))
    assert told["note"].startswith(
        f"on the first 300 of 2,000 test images: accuracy {right.float().mean():.1%}"
    )
    assert len(told["mistakes"]) == min(16, int((~right).sum()))
    for mistake in told["mistakes"][:3]:  # each one is the test image the page can load
        sample = client.get(f"/api/runs/lenet/sample/{mistake['index']}").json()
        assert sample["label"] == mistake["true"] and not right[mistake["index"]]
        image = torch.tensor(sample["pixels"], dtype=torch.uint8)
        assert int(predict(lenet, image[None]).argmax()) == mistake["predicted"]


def test_the_run_list_says_whether_a_run_has_a_history(runs_root, data_dir, tmp_path):
    import shutil

    bare = tmp_path / "lenet-bare"
    shutil.copytree(runs_root / "lenet", bare)
    (bare / "metrics.csv").unlink()
    client = TestClient(create_app([runs_root / "lenet", bare, "lenet5"], str(data_dir)))
    listed = {run["name"]: run["has_history"] for run in client.get("/api/runs").json()}
    assert listed == {"lenet": True, "lenet-bare": False, "lenet5": False}


# ------------------------------------------------------------------ 8: transparency, aspect


def test_transparent_pixels_are_laid_on_white_before_any_conversion(ui_client):
    picture = Image.new("RGBA", (28, 28), (255, 0, 0, 0))  # transparent red ...
    picture.paste((255, 0, 0, 255), (8, 8, 20, 20))  # ... around an opaque red square
    answer = upload(ui_client, "lenet", encoded(picture, "PNG")).json()
    pixels = np.array(answer["pixels"])[0]
    red_as_gray = round(0.299 * 255)  # PIL's L of pure red
    assert pixels[0, 0] == 255 and pixels[14, 14] == pytest.approx(red_as_gray, abs=1)
    assert answer["notes"][0] == "composited the transparent pixels of RGBA on white"
    colour = np.array(upload(ui_client, "cifar", encoded(picture, "PNG")).json()["pixels"])
    assert colour[:, 0, 0].tolist() == [255, 255, 255]
    assert colour[:, 16, 16].tolist() == [255, 0, 0]


def test_photos_keep_their_aspect_ratio_unless_asked_to_squash(ui_client, data_dir):
    path = data_dir / "photos" / "chelsea.png"  # 451 x 300
    data = path.read_bytes()
    cropped = upload(ui_client, "cifar", data).json()
    as_predict_reads = read_image(path, 3, 32)[0][0].numpy()  # the predict path's rule
    assert np.array_equal(np.array(cropped["pixels"]), as_predict_reads)
    assert any("centre-cropped to 32x32" in note for note in cropped["notes"])
    squashed = Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    expected = np.asarray(squashed).transpose(2, 0, 1)
    by_query = upload(ui_client, "cifar", data, params={"fit": "squash"}).json()
    by_form = ui_client.post(
        "/api/runs/cifar/upload", files={"file": ("c.png", data)}, data={"fit": "squash"}
    ).json()
    for answer in (by_query, by_form):
        assert np.array_equal(np.array(answer["pixels"]), expected)
        assert answer["notes"] == ["resized 451x300 to 32x32 (squashed)"]
    wrong = upload(ui_client, "cifar", data, params={"fit": "stretch"})
    assert wrong.status_code == 422 and "squash" in wrong.json()["detail"]


# ------------------------------------------------------------------ 5: the summary, once


def test_the_summary_is_traced_once_per_model(runs_root, data_dir, monkeypatch):
    from cnnlab.explorer import service

    traced = []
    real = service.summary
    monkeypatch.setattr(service, "summary", lambda *a, **k: traced.append(a[1]) or real(*a, **k))
    app = create_app([runs_root / "lenet", runs_root / "cifar"], str(data_dir))
    client = TestClient(app)
    first = client.get("/api/runs/lenet/summary").json()
    again = client.get("/api/runs/lenet/summary").json()
    assert first == again and traced == ["1x28x28"]
    run = app.state.explorer.runs["lenet"]
    other = load_source(str(runs_root / "lenet"))  # re-opened: other weights
    with torch.no_grad():
        next(other.model.parameters()).zero_()
    run.source = other
    assert client.get("/api/runs/lenet/summary").json() == first
    assert traced == ["1x28x28", "1x28x28"]  # traced again, not served from the old model
    run.source = app.state.explorer.runs["cifar"].source  # another model under the same name
    swapped = client.get("/api/runs/lenet/summary").json()
    assert swapped["input_shape"] == [3, 32, 32] and swapped != first


# ------------------------------------------------------------------ 10: the /docs page


def open_docs(browser, server, width, height):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.goto(f"{server}/docs")
    page.wait_for_selector("#operations[data-count]")
    return page


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_the_docs_page_fits_a_phone_and_axe_finds_nothing_serious(
    ui_server, ui_browser, width, height
):
    page = open_docs(ui_browser, ui_server, width, height)
    assert "width=device-width" in page.get_attribute("meta[name=viewport]", "content")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    text = page.locator("main").inner_text()
    assert "``" not in text
    assert page.locator(".operation p code", has_text="sprite").count() >= 1
    bad = serious_axe_violations(page)
    assert bad == [] and page.problems == []
    page.close()


def test_every_try_it_form_starts_with_a_request_its_endpoint_accepts(
    ui_server, ui_browser, data_dir
):
    page = open_docs(ui_browser, ui_server, 1280, 800)
    sections = page.locator("section.operation")
    count = sections.count()
    assert count == int(page.get_attribute("#operations", "data-count")) >= 12
    answered = {}
    for i in range(count):
        section = sections.nth(i)
        if section.locator("input[type=file]").count():
            section.locator("input[type=file]").set_input_files(
                str(data_dir / "photos" / "chelsea.png")
            )
        section.locator("button").click()
        section.locator("pre.answer[data-status]").wait_for(timeout=60_000)
        key = f"{section.get_attribute('data-method')} {section.get_attribute('data-path')}"
        answered[key] = (
            int(section.locator("pre.answer").get_attribute("data-status")),
            section.locator("pre.answer").text_content()[:200],
        )
    refused = {key: answer for key, answer in answered.items() if not 200 <= answer[0] < 300}
    assert refused == {} and len(answered) == count
    assert {"post /api/runs/{name}/kernel", "post /api/runs/{name}/gradient"} <= set(answered)
    page.close()


# ------------------------------------------------- a binary head and a 1000-class softmax (7, 13)


def test_a_binary_head_has_two_classes_in_the_gradient_view_too(tmp_path, data_dir):
    """One logit, two classes: /gradient accepts class 1, and class 0 has its own loss and
    non-zero gradients, as /analyze shows two classes."""
    from cnnlab.runs.start import train_run
    from cnnlab.train import TrainConfig

    config = TrainConfig(
        model="lenet5",
        model_options={"binary": True},
        dataset="mnist",
        classes=["0", "1"],
        data_dir=str(data_dir),
        train_subset=400,
        test_subset=100,
        epochs=1,
        progress=False,
    )
    run = train_run(config, tmp_path, "binary").run_dir
    client = TestClient(create_app([run], str(data_dir)))
    image = client.get("/api/runs/binary/sample/0").json()["pixels"]
    analysed = client.post("/api/runs/binary/analyze", json={"pixels": image}).json()
    assert len(analysed["probabilities"]) == 2
    assert analysed["layers"][-1]["name"] == "softmax" and analysed["layers"][-1]["shape"] == [2]
    losses = {}
    for target in (0, 1):
        body = {"pixels": image, "layer": "features.0", "channel": 0, "class_index": target}
        answer = client.post("/api/runs/binary/gradient", json=body)
        assert answer.status_code == 200, answer.text
        told = answer.json()
        losses[target] = told["loss"]
        assert np.abs(np.array(told["channels"][0]["grad"])).sum() > 0
    probability = analysed["probabilities"][1]["p"]  # sigmoid of the one logit
    assert losses[0] == pytest.approx(-np.log(1 - probability), rel=1e-4)
    assert losses[1] == pytest.approx(-np.log(probability), rel=1e-4)
    refused = client.post(
        "/api/runs/binary/gradient",
        json={"pixels": image, "layer": "features.0", "channel": 0, "class_index": 2},
    )
    assert refused.status_code == 422 and "expected 0..1" in refused.json()["detail"]


def test_a_thousand_class_softmax_lists_the_prediction_first_and_show_all_stays_small():
    client = TestClient(create_app(["resnet18"]))
    pixels = np.random.default_rng(0).integers(0, 256, (3, 224, 224)).tolist()
    answer = client.post("/api/runs/resnet18/analyze", json={"pixels": pixels, "channels": 1024})
    assert answer.status_code == 200
    assert len(answer.content) < 8 * 2**20  # was 7 MiB at 16 maps a layer... every map: less
    softmax = answer.json()["layers"][-1]
    assert softmax["indices"][0] == answer.json()["prediction"]["index"]
    assert softmax["values"] == sorted(softmax["values"], reverse=True)
    conv1 = answer.json()["layers"][0]
    assert conv1["budget_cut"] and conv1["channels_shown"] < 64  # said, not silently cut
    fc = next(layer for layer in answer.json()["layers"] if layer["name"] == "fc")
    assert fc["kind"] == "linear" and len(fc["values"]) == len(fc["indices"]) >= 64
