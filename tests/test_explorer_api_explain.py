"""The explorer's per-layer explanations (/explain), its gradient view (/gradient) and the layer
fields of /analyze, each number checked against torch: an independent copy of the run's model,
cut at the layer in question, on real test images."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab.explorer import create_app
from cnnlab.runs.load import load_run
from cnnlab.runs.start import train_run
from cnnlab.train import TrainConfig


@pytest.fixture(scope="module")
def blocks_run(tmp_path_factory, data_dir):
    """A small residual network with batch norm (resnet_blocks), trained briefly on CIFAR-10,
    so its batch-norm statistics are learned, not the defaults."""
    root = tmp_path_factory.mktemp("blocks")
    config = TrainConfig(
        model="resnet_blocks",
        dataset="cifar10",
        data_variant="subset",
        train_subset=1000,
        test_subset=100,
        data_dir=str(data_dir),
        progress=False,
        epochs=1,
        batch_size=64,
        lr=3e-3,
    )
    train_run(config, root, "blocks")
    return root / "blocks"


@pytest.fixture(scope="module")
def client(runs_root, blocks_run, data_dir):
    app = create_app([runs_root / "lenet", runs_root / "cifar", blocks_run], str(data_dir))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def models(runs_root, blocks_run):
    """Independent copies of the served models (the reference)."""
    return {
        "lenet": load_run(runs_root / "lenet"),
        "cifar": load_run(runs_root / "cifar"),
        "blocks": load_run(blocks_run),
    }


def near(got, expected, atol: float = 1e-5) -> None:
    """Nested lists (or arrays) equal within ``atol``."""
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    assert got.shape == expected.shape and np.allclose(got, expected, atol=atol), (got, expected)


def pixels(client, run: str, index: int = 0) -> list:
    return client.get(f"/api/runs/{run}/sample/{index}").json()["pixels"]


def model_input(trained, image: list) -> torch.Tensor:
    return trained.preprocess(torch.tensor(image, dtype=torch.uint8)[None])


def explain(client, run: str, image: list, layer: str, channel: int, y: int = 0, x: int = 0):
    body = {"pixels": image, "layer": layer, "channel": channel, "y": y, "x": x}
    response = client.post(f"/api/runs/{run}/explain", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def box(found: dict, keys=("layer", "y0", "x0", "y1", "x1")) -> dict:
    """The keys a test compares of a window, a field or a flatten's source."""
    return {k: found[k] for k in keys if k in found}


def lenet_upto(trained, image: list, stop: int) -> torch.Tensor:
    """LeNet's features[:stop] on the fitted input: the output of features.{stop - 1}."""
    with torch.no_grad():
        model = trained.model
        return model.features[:stop](model.fit(model_input(trained, image)))[0]


# ----------------------------------------------------------------------------------- analyze


def test_analyze_names_every_layer_with_its_kind_shape_and_ranges(client, models):
    image = pixels(client, "lenet", 3)
    answer = client.post("/api/runs/lenet/analyze", json={"pixels": image}).json()
    kinds = [(layer["name"], layer["kind"]) for layer in answer["layers"]]
    assert [k for _, k in kinds] == [
        "fit",
        "conv",
        "relu",
        "pool",
        "conv",
        "relu",
        "pool",
        "conv",
        "relu",
        "flatten",
        "linear",
        "relu",
        "linear",
        "softmax",
    ]
    conv1 = answer["layers"][1]
    assert conv1["label"] == "features.0 · Conv2d · 6×28×28" and conv1["shape"] == [6, 28, 28]
    reference = lenet_upto(models["lenet"], image, 1)
    assert [m["min"] for m in conv1["maps"]] == pytest.approx(reference.amin((1, 2)).tolist())
    assert [m["max"] for m in conv1["maps"]] == pytest.approx(reference.amax((1, 2)).tolist())
    assert conv1["layer_min"] == pytest.approx(float(reference.min()))
    c5 = answer["layers"][7]
    assert (c5["channels_total"], c5["channels_shown"], len(c5["maps"])) == (120, 16, 16)
    trained = models["lenet"]
    with torch.no_grad():
        logits = trained.model(model_input(trained, image))[0]
    assert answer["logits"] == pytest.approx(logits.tolist(), abs=1e-5)
    probabilities = torch.softmax(logits, 0)
    assert [p["p"] for p in answer["probabilities"]] == pytest.approx(probabilities.tolist())
    assert answer["prediction"]["index"] == int(logits.argmax()) == answer["predicted"]
    last = answer["layers"][-1]  # by probability, the prediction first
    ranked = probabilities.argsort(descending=True)
    assert last["name"] == "softmax" and last["indices"] == ranked.tolist()
    assert last["values"] == pytest.approx(probabilities[ranked].tolist())


def test_all_channels_on_request_and_constant_maps_are_mid_gray(client):
    image = pixels(client, "lenet", 3)
    answer = client.post("/api/runs/lenet/analyze", json={"pixels": image, "channels": 128})
    c5, relu5 = answer.json()["layers"][7], answer.json()["layers"][8]
    assert c5["channels_shown"] == 120 and len(c5["maps"]) == 120
    assert not any(m["constant"] for m in relu5["maps"])  # one value is not a "constant map"
    tiles = np.array(Image.open(io.BytesIO(base64.b64decode(relu5["sprite"].split(",")[1]))))
    assert tiles.shape == (1, 120) and (tiles == 128).all()  # mid-gray, never black
    varied = answer.json()["layers"][1]
    strip = np.array(Image.open(io.BytesIO(base64.b64decode(varied["sprite"].split(",")[1]))))
    assert strip.min() == 0 and strip.max() == 255  # each real map spans the whole gray scale
    too_many = client.post("/api/runs/lenet/analyze", json={"pixels": image, "channels": 5000})
    assert too_many.status_code == 422
    assert too_many.json()["detail"].startswith("channels: expected at most 1024, got 5000")


# ----------------------------------------------------------------------------------- explain


def test_conv_explanation_sums_every_input_channel(client, models):
    image = pixels(client, "lenet", 3)
    y, x = 4, 6
    told = explain(client, "lenet", image, "features.3", 5, y, x)
    assert told["kind"] == "conv" and [c["index"] for c in told["channels"]] == list(range(6))
    total = told["bias"]
    before = lenet_upto(models["lenet"], image, 3)  # the map features.3 reads
    for part in told["channels"]:
        products = np.array(part["patch"]) * np.array(part["kernel"])
        assert np.allclose(products, part["products"], atol=1e-6)
        near(part["patch"], before[part["index"], y : y + 5, x : x + 5])
        assert part["subtotal"] == pytest.approx(products.sum(), abs=1e-5)
        total += part["subtotal"]
    out = float(lenet_upto(models["lenet"], image, 4)[5, y, x])
    assert told["sum"] == pytest.approx(total, abs=1e-5)
    assert told["sum"] == pytest.approx(out, abs=1e-4) and told["value"] == pytest.approx(out)
    assert box(told["window"]) == {
        "layer": "features.2",
        "y0": y,
        "x0": x,
        "y1": y + 5,
        "x1": x + 5,
    }
    # back through pool (x2), conv1 (5x5) and the 28 -> 32 zero padding (-2), clipped to 28
    rows = (max(2 * y - 2, 0), min(2 * y + 12, 28))
    cols = (max(2 * x - 2, 0), min(2 * x + 12, 28))
    assert box(told["receptive_field"]) == {
        "y0": rows[0],
        "x0": cols[0],
        "y1": rows[1],
        "x1": cols[1],
    }
    assert told["receptive_field"]["whole"] is False
    assert f"{out:.4g}" in told["text"] and "6 input channels" in told["text"]


def test_a_padded_convolution_at_the_corner(client, models):
    image = pixels(client, "blocks", 1)
    told = explain(client, "blocks", image, "stem.0", 3, 0, 0)
    assert told["padding"] == [1, 1] and told["stride"] == [1, 1] and len(told["channels"]) == 3
    assert box(told["window"]) == {"layer": "input", "y0": -1, "x0": -1, "y1": 2, "x1": 2}
    assert box(told["receptive_field"]) == {"y0": 0, "x0": 0, "y1": 2, "x1": 2}
    for part in told["channels"]:
        assert np.array(part["patch"])[0].tolist() == [0, 0, 0]  # the padding row
    trained = models["blocks"]
    with torch.no_grad():
        out = float(trained.model.stem[:1](model_input(trained, image))[0, 3, 0, 0])
    assert told["sum"] == pytest.approx(out, abs=1e-4) == told["value"]


def test_relu_and_max_pooling(client, models):
    image = pixels(client, "lenet", 3)
    relu = explain(client, "lenet", image, "features.4", 2, 3, 3)
    before = float(lenet_upto(models["lenet"], image, 4)[2, 3, 3])
    assert relu["kind"] == "relu" and relu["function"] == "max(0, x)"
    assert relu["before"] == pytest.approx(before) and relu["after"] == max(0.0, relu["before"])
    assert box(relu["window"]) == {"layer": "features.3", "y0": 3, "x0": 3, "y1": 4, "x1": 4}
    pooled = explain(client, "lenet", image, "features.5", 2, 1, 2)
    window = lenet_upto(models["lenet"], image, 5)[2, 2:4, 4:6]
    out = float(lenet_upto(models["lenet"], image, 6)[2, 1, 2])
    assert pooled["op"] == "max"
    near(pooled["patch"], window)
    dy, dx = pooled["winner"]
    assert pooled["patch"][dy][dx] == pytest.approx(float(window.max())) == out
    assert pooled["value"] == pytest.approx(out)
    assert box(pooled["window"]) == {"layer": "features.4", "y0": 2, "x0": 4, "y1": 4, "x1": 6}


def test_batch_norm_and_average_pooling(client, models):
    image = pixels(client, "blocks", 2)
    trained = models["blocks"]
    bn = trained.model.stem[1]
    told = explain(client, "blocks", image, "stem.1", 7, 5, 9)
    assert told["mean"] == pytest.approx(float(bn.running_mean[7]))
    assert told["var"] == pytest.approx(float(bn.running_var[7]))
    assert told["mean"] != 0 and told["var"] != 1  # learned statistics, not the defaults
    formula = (told["x"] - told["mean"]) / np.sqrt(told["var"] + told["eps"])
    assert told["y"] == pytest.approx(formula * told["gamma"] + told["beta"], abs=1e-5)
    with torch.no_grad():
        out = float(trained.model.stem[:2](model_input(trained, image))[0, 7, 5, 9])
    assert told["y"] == pytest.approx(out, abs=1e-4) and told["value"] == pytest.approx(out)
    pooled = explain(client, "blocks", image, "pool", 4, 0, 0)  # adaptive average, 16x16 -> 1x1
    assert pooled["op"] == "avg" and np.array(pooled["patch"]).shape == (16, 16)
    with torch.no_grad():
        model = trained.model
        features = model.block2(model.block1(model.stem(model_input(trained, image))))[0]
    assert pooled["mean"] == pytest.approx(float(features[4].mean()), abs=1e-5)
    assert pooled["value"] == pytest.approx(pooled["mean"], abs=1e-5)


def test_linear_flatten_and_softmax(client, models):
    image = pixels(client, "lenet", 3)
    trained = models["lenet"]
    c5 = lenet_upto(trained, image, 8).flatten()  # what the classifier reads
    flat = explain(client, "lenet", image, "classifier.0", 37)
    assert box(flat["source"], ("channel", "y", "x")) == {"channel": 37, "y": 0, "x": 0}
    assert flat["value"] == pytest.approx(float(c5[37]))
    linear = explain(client, "lenet", image, "classifier.1", 11)
    layer = trained.model.classifier[1]
    with torch.no_grad():
        out = float(layer(c5)[11])
    assert linear["count"] == 120 and len(linear["top_terms"]) == 20
    sizes = [abs(t["product"]) for t in linear["top_terms"]]
    assert sizes == sorted(sizes, reverse=True)
    for term in linear["top_terms"]:
        assert term["input"] == pytest.approx(float(c5[term["index"]]))
        assert term["weight"] == pytest.approx(float(layer.weight[11, term["index"]].detach()))
        assert term["product"] == pytest.approx(term["weight"] * term["input"], abs=1e-6)
    assert linear["sum"] == pytest.approx(out, abs=1e-4) and linear["value"] == pytest.approx(out)
    soft = explain(client, "lenet", image, "softmax", 4)
    with torch.no_grad():
        logits = trained.model(model_input(trained, image))[0]
    probabilities = torch.softmax(logits, 0)
    assert soft["logits"] == pytest.approx(logits.tolist(), abs=1e-5)
    assert soft["probabilities"] == pytest.approx(probabilities.tolist(), abs=1e-6)
    near(np.array(soft["exps"]) / soft["sum_exp"], probabilities, 1e-6)
    assert soft["value"] == pytest.approx(float(probabilities[4]))


def test_a_map_flattened_into_a_vector_and_a_linear_layer_after_torch_flatten(client, models):
    image = pixels(client, "cifar", 0)
    flat = explain(client, "cifar", image, "classifier.0", 37)  # 128 x 4 x 4 maps
    # 37 = 2*16 + 1*4 + 1
    assert box(flat["source"], ("channel", "y", "x")) == {"channel": 2, "y": 1, "x": 1}
    trained = models["cifar"]
    with torch.no_grad():
        maps = trained.model.features(model_input(trained, image))[0]
    assert flat["value"] == pytest.approx(float(maps[2, 1, 1]))
    image = pixels(client, "blocks", 0)
    fc = explain(client, "blocks", image, "fc", 6)  # after torch.flatten in forward()
    trained = models["blocks"]
    with torch.no_grad():
        logits = trained.model(model_input(trained, image))[0]
    assert fc["sum"] == pytest.approx(float(logits[6]), abs=1e-4) and fc["count"] == 32


def test_the_step_after_a_residual_add_and_bad_positions_are_one_sentence(client, models):
    image = pixels(client, "blocks", 0)
    after_sum = explain(client, "blocks", image, "block1.relu", 0, 0, 0)  # relu(x + f(x))
    assert after_sum["sources"] == ["block1.add"]
    added = explain(client, "blocks", image, "block1.add", 0, 0, 0)
    terms = added["terms"]
    assert len(terms) == 2 and added["computed"] == pytest.approx(sum(t["value"] for t in terms))
    assert added["value"] == pytest.approx(after_sum["before"], abs=1e-6)
    image = pixels(client, "lenet", 0)
    far = {"pixels": image, "layer": "features.3", "channel": 16, "y": 0, "x": 0}
    refused = client.post("/api/runs/lenet/explain", json=far)
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("channel 16, y 0, x 0: step features.3 has 16 ")
    unknown = {**far, "layer": "features.99", "channel": 0}
    assert "features.99" in client.post("/api/runs/lenet/explain", json=unknown).json()["detail"]


# ---------------------------------------------------------------------------------- gradient


def test_the_kernel_gradient_is_autograds(client, models):
    image = pixels(client, "lenet", 5)
    body = {"pixels": image, "layer": "features.3", "channel": 2, "class_index": 3}
    told = client.post("/api/runs/lenet/gradient", json=body).json()
    trained = models["lenet"]
    conv = trained.model.features[3]
    kept = {}
    handle = conv.register_forward_hook(lambda m, a, o: kept.update(x=a[0], out=o))
    try:
        logits = trained.model(model_input(trained, image))
        loss = F.cross_entropy(logits, torch.tensor([3]))
        weight, bias, upstream = torch.autograd.grad(loss, [conv.weight, conv.bias, kept["out"]])
    finally:
        handle.remove()
    assert told["loss"] == pytest.approx(float(loss.detach()), abs=1e-6)
    assert told["class_index"] == 3
    assert [c["index"] for c in told["channels"]] == list(range(6))
    for part in told["channels"]:
        near(part["grad"], weight[2, part["index"]], 1e-6)
    assert told["bias_grad"] == pytest.approx(float(bias[2]), abs=1e-6)
    near(told["upstream"], upstream[0, 2], 1e-7)
    # the course's formula: dL/dW = the layer input correlated with the upstream gradient
    given = kept["x"].detach()[0]
    up = torch.tensor(told["upstream"])[None, None]
    for part in told["channels"]:
        corr = F.conv2d(given[part["index"]][None, None], up)[0, 0]
        near(part["grad"], corr)
    # back to the input: the full convolution with the rotated kernel is autograd's dL/dx
    layer_input = given[None].clone().requires_grad_()
    (through,) = torch.autograd.grad((conv(layer_input)[0, 2] * upstream[0, 2]).sum(), layer_input)
    for part in told["channels"]:
        near(part["input_grad"], through[0, part["index"]], 1e-6)
    assert np.abs(np.array(told["channels"][0]["input_grad"])).sum() > 0
    default = client.post("/api/runs/lenet/gradient", json={**body, "class_index": None}).json()
    assert default["class_index"] == int(logits.argmax())
    pooled = client.post("/api/runs/lenet/gradient", json={**body, "layer": "features.5"}).json()
    pool_input = lenet_upto(trained, image, 5)[2]  # the map features.5 pools
    through, up = np.array(pooled["input_grad"]), np.array(pooled["upstream"])
    for i, j in np.ndindex(*up.shape):  # each 2x2 window: all of its gradient at its winner
        cells, window = (
            through[2 * i : 2 * i + 2, 2 * j : 2 * j + 2],
            pool_input[2 * i : 2 * i + 2, 2 * j : 2 * j + 2],
        )
        assert cells.sum() == pytest.approx(up[i, j], abs=1e-7)
        if up[i, j] != 0:
            assert cells.flatten()[int(window.argmax())] == pytest.approx(up[i, j], abs=1e-7)
    wrong = client.post("/api/runs/lenet/gradient", json={**body, "layer": "features.1"})
    assert wrong.status_code == 422 and "expected a convolution" in wrong.json()["detail"]
