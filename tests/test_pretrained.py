"""torchvision's ImageNet weights and preprocessing: ``--weights`` downloads into the torch
cache when the file is missing (here through a stand-in for the network: tests never reach
it), an offline download leaves nothing behind, photos go to ImageNet models resized to 256
and centre-cropped to 224, and a transfer from an ImageNet model keeps ImageNet's mean/std."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

import cnnlab.runs.load
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.runs.load import load_run
from cnnlab.runs.sources import load_source

WEIGHTS = torchvision.models.ResNet18_Weights.DEFAULT


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A file torchvision's resnet18 builder made (random weights, seeded), standing in for
    the ImageNet weights a download would bring."""
    torch.manual_seed(11)
    model = torchvision.models.resnet18()
    path = tmp_path_factory.mktemp("weights") / Path(WEIGHTS.url).name
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture
def network(monkeypatch, stand_in) -> list[str]:
    """torch's downloader copies the stand-in file instead of fetching the URL; returns the
    URLs it was asked for."""
    asked: list[str] = []

    def fetch(url, dst, hash_prefix=None, progress=True):
        asked.append(url)
        Path(dst).write_bytes(stand_in[0].read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fetch)
    return asked


def _offline(monkeypatch) -> None:
    def fail(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


@pytest.fixture
def cat(data_dir) -> Path:
    return Path(data_dir) / "photos" / "chelsea.png"


def test_weights_are_downloaded_into_the_torch_cache_when_missing(
    tmp_path, monkeypatch, network, stand_in
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    loaded = load_source("torchvision:resnet18", weights=True)
    assert network == [WEIGHTS.url]
    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(WEIGHTS.url).name
    assert cached.read_bytes() == stand_in[0].read_bytes()
    for name, value in stand_in[1].state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name
    assert loaded.classes == list(WEIGHTS.meta["categories"])
    # the second time the file comes from the cache: no download
    _offline(monkeypatch)
    again = load_source("torchvision:resnet18", weights=True)
    assert torch.equal(again.model.fc.weight, stand_in[1].fc.weight)
    # the models cnnlab builds (transfer's source) take the same path
    from cnnlab.models import create_model

    model = create_model("resnet18", num_classes=5, pretrained=True)
    assert torch.equal(model.layer4[1].conv2.weight, stand_in[1].layer4[1].conv2.weight)


@pytest.mark.parametrize("existing", ["nothing", "torch home", "hub"])
def test_an_offline_download_is_one_line_and_leaves_no_folder_behind(
    existing, tmp_path, monkeypatch
):
    home = tmp_path / "torch"
    if existing != "nothing":  # what was there before stays, and stays as it was
        (home / "hub" if existing == "hub" else home).mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.setenv("TORCH_HOME", str(home))
    _offline(monkeypatch)
    with pytest.raises(CnnlabError) as error:
        load_source("torchvision:resnet18", weights=True)
    message = str(error.value)
    assert "\n" not in message and "URLError" in message and WEIGHTS.url in message
    assert str(home / "hub" / "checkpoints" / Path(WEIGHTS.url).name) in message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_download_cut_short_leaves_no_file_behind(tmp_path, monkeypatch):
    """A file the download wrote but torch cannot read is removed with the folders."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda url, dst, *a, **k: Path(dst).write_bytes(b"PK")
    )
    with pytest.raises(CnnlabError, match="cannot download its ImageNet weights"):
        load_source("torchvision:resnet18", weights=True)
    assert not (tmp_path / "torch").exists()


def test_predict_reads_a_photo_as_imagenet_models_do(cat, tmp_path, monkeypatch, capsys):
    """The batch the model gets is torchvision's own ImageNet view of the photo: shorter side
    resized to 256, the central 224 x 224, ImageNet's mean and std."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _offline(monkeypatch)  # untrained: nothing is downloaded
    given: list[torch.Tensor] = []
    original = cnnlab.runs.load.predict

    def recording(source, images):
        given.append(source.preprocess(images))
        return original(source, images)

    monkeypatch.setattr(cnnlab.runs.load, "predict", recording)
    assert main(["predict", "torchvision:resnet18", str(cat), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert any(
        "centre-cropped to 224x224" in n and "shorter side 256" in n for n in result["notes"]
    )
    with Image.open(cat) as image:
        assert image.size == (451, 300)  # not square: a squashed cat would differ
        expected = WEIGHTS.transforms()(image.convert("RGB")).unsqueeze(0)
    assert given[0].shape == (1, 3, 224, 224)
    assert torch.allclose(given[0], expected, atol=1e-5)


def test_transfer_from_an_imagenet_model_keeps_imagenet_preprocessing(
    tmp_path, monkeypatch, network, data_dir, cat, capsys
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    runs = tmp_path / "runs"
    argv = ["transfer", "--from", "torchvision:resnet18", "--dataset", "cifar10"]
    argv += ["--data-variant", "subset", "--data-dir", str(data_dir), "--no-progress"]
    argv += ["--strategy", "feature-extract", "--epochs", "1", "--batch-size", "4"]
    argv += ["--train-subset", "4", "--test-subset", "2", "--runs-dir", str(runs), "--name", "t"]
    assert main(argv) == 0
    assert network == [WEIGHTS.url]  # the ImageNet weights were fetched (the stand-in here)
    transform = WEIGHTS.transforms()
    state = torch.load(runs / "t" / "checkpoint.pt", weights_only=False)
    assert state["normalization"]["mean"] == pytest.approx(transform.mean)
    assert state["normalization"]["std"] == pytest.approx(transform.std)
    trained = load_run(runs / "t")
    assert (trained.input_size, trained.resize) == (224, 256)
    assert trained.preprocess.mean == pytest.approx(transform.mean)
    # its test images: 32 x 32 scaled to 256, the central 224 (as the source's weights were
    # trained), not squashed to 224
    from cnnlab.data import load_dataset

    test = trained.test_split()
    raw = load_dataset("cifar10", "test", root=str(data_dir), variant="subset")
    raw = raw.subset(2, seed=trained.config.seed)
    scaled = torch.nn.functional.interpolate(
        raw.images.float(), size=(256, 256), mode="bilinear", align_corners=False
    )
    assert torch.equal(
        test.images, scaled.round().clamp(0, 255).to(torch.uint8)[..., 16:240, 16:240]
    )
    # predict with the transferred run reads a photo the same way
    capsys.readouterr()
    assert main(["predict", str(runs / "t"), str(cat), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)[0]["notes"]
    assert any("centre-cropped to 224x224" in n and "shorter side 256" in n for n in notes)
    # the exported weights carry the same preprocessing in their metadata
    from cnnlab.runs.export import export_safetensors

    meta = export_safetensors(runs / "t").metadata
    assert meta["resize"] == "256" and meta["input_size"] == "224"
    assert "shorter side is 256" in meta["preprocessing"]
    assert json.loads(meta["mean"]) == pytest.approx(transform.mean)
