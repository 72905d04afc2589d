"""The explorer's API around the runs: what /api/runs says of runs and model sources, the
practitioner report, the worked-example presets, Grad-CAM's colours and legend, the favicon,
and error answers that are always one readable sentence."""

from __future__ import annotations

import base64
import csv
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from matplotlib import colormaps
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.explorer import create_app
from cnnlab.runs.load import load_run


@pytest.fixture(scope="module")
def app(runs_root, data_dir):
    return create_app([runs_root / "lenet", "resnet18"], str(data_dir))


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


def picture(data_url: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


# --------------------------------------------------------------------- runs and model sources


def test_runs_and_model_sources_are_listed_and_both_answer(client, data_dir):
    lenet, resnet = client.get("/api/runs").json()
    assert (lenet["name"], lenet["source"], lenet["model"], lenet["dataset"]) == (
        "lenet",
        "run",
        "lenet5",
        "mnist",
    )
    assert lenet["input"] == {"channels": 1, "size": 28}
    assert lenet["has_samples"] and lenet["has_history"]
    assert (resnet["name"], resnet["source"], resnet["dataset"]) == ("resnet18", "model", None)
    assert resnet["input"] == {"channels": 3, "size": 224} and len(resnet["classes"]) == 1000
    assert not resnet["has_samples"] and not resnet["has_history"]
    assert any("untrained" in note for note in resnet["notes"])
    cat = (data_dir / "photos" / "chelsea.png").read_bytes()
    upload = client.post("/api/runs/resnet18/upload", files={"file": ("cat.png", cat)}).json()
    digit = client.get("/api/runs/lenet/sample/0").json()["pixels"]
    # switching between the two runs and back gives the same answers
    first = client.post("/api/runs/lenet/analyze", json={"pixels": digit}).json()
    other = client.post("/api/runs/resnet18/analyze", json={"pixels": upload["pixels"]})
    again = client.post("/api/runs/lenet/analyze", json={"pixels": digit}).json()
    assert other.status_code == 200 and len(other.json()["probabilities"]) == 1000
    assert first["logits"] == again["logits"] and first["layers"][1] == again["layers"][1]
    told = client.post(
        "/api/runs/resnet18/explain",
        json={"pixels": upload["pixels"], "layer": "conv1", "channel": 5, "y": 40, "x": 50},
    ).json()
    assert len(told["channels"]) == 3 and told["stride"] == [2, 2]
    assert told["sum"] == pytest.approx(told["value"], abs=1e-4)
    # torchvision's BasicBlock calls its one ReLU twice: two steps, each traced, and the sum
    names = [layer["name"] for layer in other.json()["layers"]]
    assert names[names.index("layer1.0.relu#1") : names.index("layer1.0.relu#1") + 4] == [
        "layer1.0.relu#1",
        "layer1.0.conv2",
        "layer1.0.bn2",
        "layer1.0.add",
    ]
    for layer in names:  # every step of ResNet-18 answers, none refused
        shape = other.json()["layers"][names.index(layer)]["shape"]
        body = {"pixels": upload["pixels"], "layer": layer, "channel": shape[0] - 1, "y": 0, "x": 0}
        answer = client.post("/api/runs/resnet18/explain", json=body)
        assert answer.status_code == 200, (layer, answer.text)
        told = answer.json()
        assert told["computed"] == pytest.approx(told["value"], abs=1e-4), layer
    conv2 = client.post(
        "/api/runs/resnet18/explain",
        json={"pixels": upload["pixels"], "layer": "layer1.0.conv2", "channel": 0, "y": 0, "x": 0},
    ).json()
    assert conv2["window"]["layer"] == "layer1.0.relu#1"  # the first call's output
    after = client.post(
        "/api/runs/resnet18/explain",
        json={"pixels": upload["pixels"], "layer": "layer1.0.relu#2", "channel": 0, "y": 9, "x": 9},
    ).json()
    assert after["sources"] == ["layer1.0.add"] and "unknown" not in after["receptive_field"]
    for missing in ("report", "sample/0"):
        refused = client.get(f"/api/runs/resnet18/{missing}")
        assert refused.status_code == 422
        assert refused.json()["detail"].startswith(
            "resnet18 is a model, not a trained run: it has no"
        )
    assert (
        client.get("/api/runs/resnet18/report")
        .json()["detail"]
        .startswith("resnet18 is a model, not a trained run: it has no training history")
    )


def _offline(monkeypatch) -> None:
    import urllib.error

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def test_torchvision_weights_offline_are_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache, no network
    _offline(monkeypatch)
    with pytest.raises(CnnlabError, match="cannot download its ImageNet weights"):
        create_app(["torchvision:resnet18"], weights=True)
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "torchvision:resnet18", "--weights", "--port", "0"]) == 2
    # torch's hub announces the download itself (on stderr in torch 2.4, on stdout in 2.14)
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if not line.startswith("Downloading: ")]
    assert len(lines) == 1 and "cannot download" in lines[0] and "--weights" in lines[0]
    assert not (tmp_path / "torch").exists()  # the failed download left no cache folder


def test_an_uploaded_photo_reaches_an_imagenet_model_resized_and_centre_cropped(
    data_dir, tmp_path, monkeypatch
):
    """As torchvision's ImageNet weights read photos: shorter side 256, the central 224."""
    from torchvision.models import ResNet18_Weights
    from torchvision.transforms import v2

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _offline(monkeypatch)  # untrained: nothing to download
    local = TestClient(create_app(["torchvision:resnet18"]))
    cat = (data_dir / "photos" / "chelsea.png").read_bytes()
    upload = local.post(
        "/api/runs/torchvision:resnet18/upload", files={"file": ("cat.png", cat)}
    ).json()
    transform = ResNet18_Weights.DEFAULT.transforms()
    view = v2.Compose([v2.Resize(transform.resize_size), v2.CenterCrop(transform.crop_size)])
    with Image.open(io.BytesIO(cat)) as image:
        expected = np.asarray(view(image.convert("RGB"))).transpose(2, 0, 1)
    assert np.array_equal(np.asarray(upload["pixels"]), expected)
    assert any("centre-cropped to 224x224" in note for note in upload["notes"])


# ------------------------------------------------------------------------------------ report


def test_the_report_matches_the_run_and_is_computed_once(runs_root, data_dir, monkeypatch):
    from cnnlab.explorer import service

    built = []
    original = service.build_report
    monkeypatch.setattr(service, "build_report", lambda *a: built.append(1) or original(*a))
    local = TestClient(create_app([runs_root / "lenet"], str(data_dir)))
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: local.get("/api/runs/lenet/report"), range(6)))
    assert [a.status_code for a in answers] == [200] * 6 and len(built) == 1
    report = answers[0].json()
    assert all(a.json() == report for a in answers)
    with (runs_root / "lenet" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [c["epoch"] for c in report["curves"]] == [int(float(r["epoch"])) for r in rows]
    assert report["curves"][-1]["test_acc"] == pytest.approx(float(rows[-1]["test_acc"]))
    # the confusion matrix, recomputed here from the run's model and test images
    trained = load_run(runs_root / "lenet")
    test = trained.test_split(str(data_dir))
    images, labels = test.images[:2000], test.labels[:2000]
    with torch.no_grad():
        predicted = trained.model(trained.preprocess(images)).argmax(1)
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (labels.numpy(), predicted.numpy()), 1)
    assert report["confusion"] == confusion.tolist() and report["images"] == len(images)
    per_class = confusion.diagonal() / confusion.sum(1)
    assert report["per_class_accuracy"] == pytest.approx(per_class.tolist())
    mistakes = report["mistakes"]
    assert mistakes and all(m["true"] != m["predicted"] for m in mistakes)
    assert all(int(predicted[m["index"]]) == m["predicted"] for m in mistakes)
    confidences = [m["confidence"] for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    assert picture(mistakes[0]["image"]).shape == (28, 28)


# ------------------------------------------------------------------------ presets, playground


def test_presets_are_the_course_examples_solved_by_cnnlab(client):
    presets = {p["key"]: p for p in client.get("/api/presets").json()}
    assert {k: p["kind"] for k, p in presets.items()} == {
        "correlation": "correlate",
        "pooling": "pool",
        "padding-stride": "arithmetic",
        "inception-5x5": "cost",
        "parameters": "arithmetic",
    }
    # checked against torch, not against numbers typed here
    correlate = presets["correlation"]
    image = torch.tensor(correlate["inputs"]["image"], dtype=torch.float)[None, None]
    kernel = torch.tensor(correlate["inputs"]["kernel"], dtype=torch.float)[None, None]
    assert correlate["answer"]["feature_map"] == F.conv2d(image, kernel)[0, 0].tolist()
    pool = presets["pooling"]
    x = torch.tensor(pool["inputs"]["input"], dtype=torch.float)[None]
    assert pool["answer"]["max"] == F.max_pool2d(x, 2)[0].tolist()
    assert pool["answer"]["average"] == F.avg_pool2d(x, 2)[0].tolist()
    assert pool["answer"]["min"] == (-F.max_pool2d(-x, 2))[0].tolist()
    padded = presets["padding-stride"]
    fields = padded["inputs"]
    assert set(fields) == {
        "n",
        "kernel",
        "stride",
        "padding",
        "dilation",
        "in_channels",
        "out_channels",
    }
    conv = torch.nn.Conv2d(1, 1, fields["kernel"], fields["stride"], fields["padding"])
    side = conv(torch.zeros(1, 1, fields["n"], fields["n"])).shape[-1]
    assert padded["answer"]["output_size"] == side
    assert client.get("/api/arithmetic", params=fields).json()["out"] == side
    cost = presets["inception-5x5"]
    direct = torch.nn.Conv2d(192, 32, 5, padding=2)
    with FlopCounterMode(display=False) as flops:
        direct(torch.zeros(1, *cost["inputs"]["input"]))
    assert cost["answer"]["designs"]["direct"]["macs"] == flops.get_total_flops() // 2
    assert cost["answer"]["designs"]["direct"]["params"] == sum(
        p.numel() for p in direct.parameters()
    )
    params = presets["parameters"]
    layer = torch.nn.Conv2d(params["inputs"]["in_channels"], params["inputs"]["out_channels"], 5)
    assert params["answer"]["params"] == sum(p.numel() for p in layer.parameters())
    assert params["answer"]["playground"]["params"] == params["answer"]["params"]
    assert all(p["text"] and p["title"] for p in presets.values())


def test_arithmetic_limits_are_checked_on_the_server(client):
    too_big = client.get("/api/arithmetic", params={"n": 5000})
    assert too_big.status_code == 422
    assert (
        too_big.json()["detail"]
        == "n=5000: expected a whole number in 1..4096; set n within that range"
    )
    empty = client.get("/api/arithmetic?n=")
    assert empty.status_code == 422 and empty.json()["detail"].startswith(
        "n: expected a whole number"
    )
    assert client.get("/api/arithmetic").json()["bounds"]["n"] == [1, 4096]


# ---------------------------------------------------------------------------- Grad-CAM colour


def test_grad_cam_is_viridis_by_default_with_a_legend(client):
    digit = client.get("/api/runs/lenet/sample/0").json()["pixels"]
    viridis = client.post("/api/runs/lenet/cam", json={"pixels": digit}).json()
    jet = client.post("/api/runs/lenet/cam", json={"pixels": digit, "colormap": "jet"}).json()
    assert viridis["legend"]["colormap"] == "viridis" and jet["legend"]["colormap"] == "jet"
    low = (np.array(colormaps["viridis"](0.0)[:3]) * 255).astype(int)
    assert viridis["legend"]["stops"][0] == "#{:02x}{:02x}{:02x}".format(*low)
    heat = picture(viridis["heatmap"]).reshape(-1, 3).astype(int)
    palette = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(int)
    distance = np.abs(heat[:, None, :] - palette[None]).sum(-1).min(1)
    assert distance.max() <= 3  # every pixel is a viridis colour
    assert not np.array_equal(picture(jet["heatmap"]), picture(viridis["heatmap"]))
    bad = client.post("/api/runs/lenet/cam", json={"pixels": digit, "colormap": "rainbow"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("colormap: expected")


# ----------------------------------------------------------------------- errors and favicon


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "start"),
    [
        (
            "GET",
            "/api/runs/lenet/sample/1.5",
            None,
            422,
            "index: expected a whole number, got '1.5'",
        ),
        ("GET", "/api/runs/lenet/sample/", None, 404, "no endpoint at GET /api/runs/lenet/sample/"),
        ("GET", "/api/runs/lenet/sample/99999", None, 404, "index 99999: expected a test image"),
        ("GET", "/api/nothing", None, 404, "no endpoint at GET /api/nothing"),
        ("GET", "/api/runs/nope/summary", None, 404, "no run named 'nope'"),
        ("POST", "/api/runs/lenet/analyze", {}, 422, "pixels: missing"),
        ("POST", "/api/runs/lenet/analyze", "{", 422, "the request body is not valid JSON"),
        (
            "POST",
            "/api/runs/lenet/explain",
            {"pixels": [], "layer": "x", "channel": -1, "y": 0, "x": 0},
            422,
            "channel: expected at least 0, got -1",
        ),
        (
            "GET",
            "/api/runs/lenet/analyze",
            None,
            405,
            "GET is not allowed on /api/runs/lenet/analyze",
        ),
    ],
)
def test_every_error_detail_is_one_sentence(client, method, path, body, status, start):
    if isinstance(body, str):
        response = client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
    else:
        response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(start), detail
    assert "\n" not in detail and "[" not in detail.split(":")[0]


def test_the_favicon_is_served(client):
    for path in ("/favicon.ico", "/favicon.svg"):
        icon = client.get(path)
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
        assert b"<svg" in icon.content
