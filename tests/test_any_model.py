"""`cnnlab show` and `cnnlab predict` on any model, not only runs: a run folder, a registered
name (untrained, seeded), torchvision:NAME (untrained, or ImageNet weights from the torch
cache; tests never download) and package.module:callable, on the cat photo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.inspect import feature_maps
from cnnlab.runs.load import load_run, predict, read_image
from cnnlab.runs.sources import load_source


@pytest.fixture(scope="module")
def cat(data_dir) -> Path:
    return Path(data_dir) / "photos" / "chelsea.png"


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A one-epoch LeNet-5 run on scikit-learn's digits (no download, seconds)."""
    from cnnlab.runs.start import train_run
    from cnnlab.train import TrainConfig

    root = tmp_path_factory.mktemp("runs")
    train_run(TrainConfig(epochs=1, progress=False), root, "digits")
    return root / "digits"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test downloads: torch's cache is an empty folder and its downloader refuses."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _png(path: Path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) > 100


def _imagenet_input(cat: Path) -> torch.Tensor:
    """The cat as torchvision's ImageNet weights' own transforms read it (resize 256, central
    224, ImageNet mean and std), computed by torchvision apart from cnnlab's preprocessing."""
    transform = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    with Image.open(cat) as image:
        return transform(image.convert("RGB")).unsqueeze(0)


def _seeded(builder, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return builder().eval()


SOURCES = ["run", "resnet18", "torchvision:resnet18", "torchvision.models:squeezenet1_0"]


def _source(name: str, digits_run: Path) -> str:
    return str(digits_run) if name == "run" else name


@pytest.mark.parametrize("name", SOURCES)
def test_featuremaps_cam_and_predict_for_every_kind_of_source(
    name, digits_run, cat, tmp_path, capsys
):
    source = _source(name, digits_run)
    loaded = load_source(source)
    assert (loaded.run is not None) == (name == "run")
    out = tmp_path / "maps.png"
    assert main(["show", "featuremaps", source, str(cat), "--out", str(out)]) == 0
    assert _png(out)
    printed = capsys.readouterr().out
    convs = [n for n, m in loaded.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0] in printed  # the first convolution is always among those shown

    cam = tmp_path / "cam.png"
    assert main(["show", "cam", source, str(cat), "--out", str(cam)]) == 0
    assert _png(cam)
    said = capsys.readouterr().out
    image, _ = read_image(cat, loaded.in_channels, loaded.input_size, loaded.resize)
    probabilities = predict(loaded, image)[0]
    top = int(probabilities.argmax())
    assert f"cam for class {loaded.classes[top]} (p = {float(probabilities[top]):.2%})" in said

    assert main(["predict", source, str(cat), "-k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["top"][0]["index"] == top
    assert result["top"][0]["class"] == loaded.classes[top]
    assert result["top"][0]["probability"] == pytest.approx(float(probabilities[top]), rel=1e-5)


def test_a_run_source_is_the_run_unchanged(digits_run, cat):
    run = load_run(digits_run)
    loaded = load_source(str(digits_run))
    assert loaded.model is not None and loaded.classes == run.classes
    image, _ = read_image(cat, run.in_channels, run.input_size)
    assert torch.equal(predict(loaded, image), predict(run, image))
    assert loaded.run_dir == run.run_dir


def test_untrained_torchvision_model_is_seeded_and_imagenet_normalized(cat):
    loaded = load_source("torchvision:resnet18", seed=3)
    reference = _seeded(torchvision.models.resnet18, 3)
    assert (loaded.input_size, loaded.resize) == (224, 256)
    image, notes = read_image(cat, 3, 224, loaded.resize)
    assert "resized 451x300 to 384x256 (shorter side 256), centre-cropped to 224x224" in notes[0]
    x = loaded.preprocess(image)
    assert torch.allclose(x, _imagenet_input(cat), atol=1e-6)
    with torch.no_grad():
        expected = torch.softmax(reference(x), 1)
    assert torch.allclose(predict(loaded, image), expected, atol=1e-6)
    categories = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    assert loaded.classes == list(categories) and len(loaded.classes) == 1000
    other = load_source("torchvision:resnet18", seed=4)
    assert not torch.equal(other.model.conv1.weight, loaded.model.conv1.weight)


def test_registered_model_is_seeded_with_its_design_input(cat):
    from cnnlab.models import create_model, get_model_entry

    entry = get_model_entry("lenet5")
    loaded = load_source("lenet5", seed=1)
    assert (loaded.in_channels, loaded.input_size) == (
        entry.default_in_channels,
        entry.default_input_size,
    )
    assert len(loaded.classes) == entry.default_num_classes
    assert loaded.preprocess.mean == [0.5] * entry.default_in_channels
    image, _ = read_image(cat, loaded.in_channels, loaded.input_size)
    reference = _seeded(lambda: create_model("lenet5"), 1)
    maps = feature_maps(loaded.model, loaded.preprocess(image)[0], ["features.0"])
    with torch.no_grad():
        expected = reference.features[0](loaded.preprocess(image))[0]
    assert torch.allclose(maps["features.0"], expected)
    bigger = load_source("lenet5", input_shape="3x64x64")
    assert (bigger.in_channels, bigger.input_size) == (3, 64)


def test_weights_come_from_the_torch_cache_only(cat, tmp_path):
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    with pytest.raises(CnnlabError) as error:
        load_source("torchvision:resnet18", weights=True)
    message = str(error.value)
    assert weights.url in message and Path(weights.url).name in message
    assert "\n" not in message
    # a file in the cache is used as it is (here: a seeded model's weights standing in)
    cached = _seeded(torchvision.models.resnet18, 7)
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    path.parent.mkdir(parents=True)
    torch.save(cached.state_dict(), path)
    loaded = load_source("torchvision:resnet18", weights=True)
    assert torch.equal(loaded.model.fc.weight, cached.fc.weight)
    assert loaded.classes == list(weights.meta["categories"])
    out = tmp_path / "cam.png"
    assert (
        main(["show", "cam", "torchvision:resnet18", str(cat), "--weights", "--out", str(out)]) == 0
    )
    assert _png(out)


def test_featuremaps_of_a_big_model_default_to_some_convolutions(cat, tmp_path, capsys):
    import re

    from cnnlab.cli.show import MAX_DEFAULT_CONVS

    out = tmp_path / "maps.png"
    assert main(["show", "featuremaps", "resnet18", str(cat), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    shown, total = map(int, re.search(r"(\d+) of (\d+) convolutions shown", printed).groups())
    convs = [
        n
        for n, m in torchvision.models.resnet18().named_modules()
        if "conv" in type(m).__name__.lower()
    ]
    assert total == len(convs) and shown <= MAX_DEFAULT_CONVS < total
    rows = [line.split()[0] for line in printed.splitlines() if " min " in line]
    assert len(rows) == shown and set(rows) <= set(convs) and rows[0] == convs[0]
    assert _png(out)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["show", "featuremaps", "resnet18", "test:0"], "not a cnnlab run and has no test set"),
        (["show", "cam", "resnet18", "CAT", "--weights"], "ImageNet weights come with"),
        (["show", "cam", "RUN", "CAT", "--weights"], "leave --weights out"),
        (["show", "saliency", "RUN", "CAT", "--input", "3x64x64"], "leave --input out"),
        (["show", "cam", "resnet18", "CAT", "--input", "3x64x32"], "square image shape"),
        (["show", "cam", "torchvision:resnet18", "CAT", "--input", "1x64x64"], "3-channel"),
        (["show", "cam", "torchvision:resnet18", "CAT", "--class", "nope"], "not a class"),
        (["predict", "torchvision:nosuchnet", "CAT"], "torchvision has no model"),
        (["predict", "nosuchmodule:net", "CAT"], "cannot import"),
        (["predict", "torchvision:fasterrcnn_resnet50_fpn", "CAT"], "not an image classifier"),
        (["show", "cam", "torchvision:r3d_18", "CAT"], "not an image classifier"),
        (["predict", "resnet18", "CAT", "-k", "0"], "--top-k 0"),
    ],
)
def test_bad_sources_are_explained_and_write_nothing(
    argv, expected, digits_run, cat, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = [str(digits_run) if a == "RUN" else str(cat) if a == "CAT" else a for a in argv]
    assert main(argv) == 2
    assert expected in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))
    assert not (digits_run / "inspect").exists()


def test_default_output_of_a_non_run_model_is_named_after_it(cat, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "filters", "torchvision:resnet18"]) == 0
    assert _png(tmp_path / "torchvision-resnet18-filters-conv1.png")


class _DeclaresItsInput(torch.nn.Module):
    """A user's model that says how it reads an image (``cnnlab_input``)."""

    cnnlab_input = {"mean": [0.2, 0.3, 0.4], "std": [0.5, 0.6, 0.7], "size": 40, "resize": 50}

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_model_declares_its_own_preprocessing(monkeypatch, tmp_path):
    """The preprocessing of a model that is not a run comes from the model's declaration
    (torchvision's from its ImageNet weights), the mean/std 0.5 default only without one."""
    module = tmp_path / "declaring_model.py"
    module.write_text("from tests.test_any_model import _DeclaresItsInput as Net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    loaded = load_source("declaring_model:Net", input_shape="3x40x40")
    assert loaded.preprocess.mean == [0.2, 0.3, 0.4] and loaded.preprocess.std == [0.5, 0.6, 0.7]
    assert (loaded.in_channels, loaded.input_size, loaded.resize) == (3, 40, 50)
    smaller = load_source("declaring_model:Net", input_shape="3x20x20")
    assert (smaller.input_size, smaller.resize) == (20, 25)  # the declared ratio kept
    weights = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    tv = load_source("torchvision:resnet18")
    assert tv.model.cnnlab_input["mean"] == pytest.approx(list(weights.mean))
    assert tv.preprocess.mean == pytest.approx(list(weights.mean))
