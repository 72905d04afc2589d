"""The explorer's backprop answers: GET /api/backprop (the course's example network walked
through, every number recomputed here with torch autograd from the network the answer names)
and POST /api/runs/NAME/backprop (one SGD step of a trained LeNet on a real MNIST test image,
its loss and layer rows checked against an independent copy of the run), and the one-line
422s for bad options, classes and rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from cnnlab.explorer import create_app
from cnnlab.runs.load import load_run


@pytest.fixture(scope="module")
def client(runs_root, data_dir):
    app = create_app([runs_root / "lenet", "lenet5"], str(data_dir))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def lenet(runs_root):
    return load_run(runs_root / "lenet")


def torch_walk(net: dict) -> tuple[float, dict[str, np.ndarray]]:
    """The cost and gradients of the answer's own network, by torch autograd (float64)."""

    def leaf(values) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64, requires_grad=True)

    image, kernel, bias = leaf(net["input"]), leaf(net["filter"]), leaf(net["bias"])
    weights, biases = leaf(net["output_weights"]), leaf(net["output_biases"])
    act = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[net["activation"]]
    z = F.conv2d(image[None, None], kernel[None, None], bias.reshape(1))[0, 0]
    pool = F.avg_pool2d if net["pool"] == "mean" else F.max_pool2d
    z_out = weights @ pool(act(z)[None, None], 2).reshape(-1) + biases
    if net["cost"] == "squared":
        y = torch.zeros_like(z_out)
        y[net["target"]] = 1.0
        cost = 0.5 * ((act(z_out) - y) ** 2).sum()
    else:
        cost = F.cross_entropy(z_out[None], torch.tensor([net["target"]]))
    cost.backward()
    grads = {
        "dC_dw_L": weights.grad,
        "dC_db_L": biases.grad,
        "dC_dw_l": kernel.grad,
        "dC_db_l": bias.grad,
        "dC_da_input": image.grad,
    }
    return float(cost), {k: g.numpy() for k, g in grads.items()}


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"pool": "max", "activation": "tanh", "seed": 3},
        {"cost": "cross-entropy", "activation": "relu", "size": 8, "target": 1},
    ],
)
def test_the_walk_is_the_course_network_and_agrees_with_autograd(client, query):
    response = client.get("/api/backprop", params=query)
    assert response.status_code == 200, response.text
    answer = response.json()
    net, v = answer["network"], answer["values"]
    size = query.get("size", 6)
    assert np.shape(net["input"]) == (size, size) and np.shape(net["filter"]) == (3, 3)
    assert net["pool"] == query.get("pool", "mean") and net["target"] == query.get("target", 0)
    side = (size - 2) // 2
    assert np.shape(v["z_l"]) == (size - 2, size - 2) and np.shape(v["a_pool"]) == (side, side)
    assert np.allclose(v["kernel_rot180"], np.rot90(net["filter"], 2))
    cost, grads = torch_walk(net)
    assert v["C"] == pytest.approx(cost, abs=1e-12)
    for name, grad in grads.items():
        assert np.allclose(v[name], grad, atol=1e-12), name
    assert max(answer["autograd_max_difference"].values()) < 1e-9
    if net["pool"] == "max":  # each 2x2 window sends its delta to exactly one winner
        share = np.asarray(v["pool_share"]).reshape(side, 2, side, 2)
        assert (share.sum((1, 3)) == 1).all()


def test_another_seed_is_another_network(client):
    first = client.get("/api/backprop").json()["network"]
    other = client.get("/api/backprop", params={"seed": 1}).json()["network"]
    assert first["input"] != other["input"] and first["filter"] != other["filter"]


@pytest.mark.parametrize(
    ("query", "start"),
    [
        ({"size": 5}, "size 5: expected an even input side"),
        ({"size": 2}, "size: expected at least 4"),
        ({"size": 64}, "size: expected at most 32"),
        ({"activation": "softplus"}, "activation: expected 'sigmoid', 'tanh' or 'relu'"),
        ({"pool": "min"}, "pool: expected 'mean' or 'max'"),
        ({"target": 2}, "target 2: expected a class 0..1"),
        ({"seed": -1}, "seed: expected at least 0"),
        ({"size": "six"}, "size: expected a whole number"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(client, query, start):
    response = client.get("/api/backprop", params=query)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith(start) and "\n" not in detail, detail


def test_one_sgd_step_of_the_run_on_a_test_image(client, lenet):
    pixels = client.get("/api/runs/lenet/sample/0").json()["pixels"]
    response = client.post("/api/runs/lenet/backprop", json={"pixels": pixels})
    assert response.status_code == 200, response.text
    step = response.json()
    batch = lenet.preprocess(torch.tensor(pixels, dtype=torch.uint8)[None])
    with torch.no_grad():
        logits = lenet.model.eval()(batch)
    predicted = int(logits.argmax())
    assert step["target"] == step["predicted"] == predicted  # default: the predicted class
    assert step["lr"] == pytest.approx(lenet.config.lr)  # default: the run's rate
    assert step["loss_before"] == pytest.approx(
        float(F.cross_entropy(logits, torch.tensor([predicted]))), abs=1e-5
    )
    assert step["loss_after"] < step["loss_before"]  # a small step down the gradient
    assert step["classes"] == list(lenet.classes)
    # a row per layer call, from the output down to the image
    leaves = [n for n, m in lenet.model.named_modules() if n and not list(m.children())]
    assert [row["name"] for row in step["layers"]] == leaves[::-1]
    for row in step["layers"]:
        assert row["delta_norm"] > 0 and row["text"], row
        if row["check"] is not None:
            assert row["check"] < 1e-4, row
    convs = [row for row in step["layers"] if row["kind"] == "Conv2d"]
    assert convs and all(row["update_norm"] > 0 for row in convs)
    for row in convs:
        weight = dict(lenet.model.named_modules())[row["name"]].weight.detach()
        kernel = weight[row["example"]["channel"], 0]
        assert np.allclose(row["example"]["filter"], kernel, atol=1e-5)
        assert np.allclose(row["example"]["rotated"], kernel.flip(0, 1), atol=1e-5)
        assert row["relative_update"] == pytest.approx(row["update_norm"] / row["weight_norm"])
    # the step is taken on a copy: the served model answers the same loss again
    again = client.post(
        "/api/runs/lenet/backprop", json={"pixels": pixels, "class_index": 3, "lr": 0.5}
    ).json()
    assert again["target"] == 3 and again["lr"] == 0.5
    redo = client.post("/api/runs/lenet/backprop", json={"pixels": pixels}).json()
    assert redo["loss_before"] == pytest.approx(step["loss_before"], abs=1e-6)


def test_a_model_source_steps_at_a_default_rate_with_a_note(client):
    pixels = np.full((1, 32, 32), 128).tolist()
    step = client.post("/api/runs/lenet5/backprop", json={"pixels": pixels}).json()
    assert step["lr"] == 0.01 and "not a trained run" in step["notes"][0]


@pytest.mark.parametrize(
    ("body", "status", "start"),
    [
        ({"class_index": 10}, 422, "class_index 10: expected 0..9"),
        ({"class_index": -1}, 422, "class_index -1: expected 0..9"),
        ({"lr": 0}, 422, "lr: expected more than 0"),
        ({"lr": 1000}, 422, "lr: expected at most 10"),
        ({"pixels": [[1, 2], [3, 4]]}, 422, "pixels have shape [1, 2, 2]"),
    ],
)
def test_a_bad_step_request_is_one_line_naming_it(client, body, status, start):
    pixels = client.get("/api/runs/lenet/sample/1").json()["pixels"]
    response = client.post("/api/runs/lenet/backprop", json={"pixels": pixels} | body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail.startswith(start) and "\n" not in detail, detail


def test_an_unknown_run_is_a_404(client):
    response = client.post("/api/runs/nope/backprop", json={"pixels": [[0]]})
    assert response.status_code == 404 and "no run named 'nope'" in response.json()["detail"]
