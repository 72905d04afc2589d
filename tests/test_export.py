"""`cnnlab export RUN --format onnx`: the file runs in onnxruntime on the run's test split with
the preprocessing its metadata states, and gives the run's own logits and accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cnnlab import __version__
from cnnlab.cli import main
from cnnlab.runs.export import read_onnx_metadata
from cnnlab.runs.load import evaluate_run, load_run
from cnnlab.runs.start import train_run
from cnnlab.train import TrainConfig


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, data_dir) -> Path:
    """Two short real trainings: LeNet-5 on MNIST, a batch-norm ResNet-18 on CIFAR-10 (two
    steps: enough to move its batch-norm statistics off their start)."""
    root = tmp_path_factory.mktemp("export-runs")
    common = dict(data_dir=str(data_dir), progress=False, epochs=1, batch_size=64, lr=3e-3)
    train_run(
        TrainConfig(
            model="lenet5",
            model_options={"modern": True},
            dataset="mnist",
            train_subset=3000,
            test_subset=300,
            **common,
        ),
        root,
        "lenet",
    )
    train_run(
        TrainConfig(
            model="resnet18_cifar",
            dataset="cifar10",
            data_variant="subset",
            train_subset=64,
            test_subset=200,
            **{**common, "batch_size": 32},
        ),
        root,
        "residual",
    )
    return root


def cli(*args: str) -> int:
    """``cnnlab ARGS``'s exit code, usage errors (argparse's SystemExit) included."""
    try:
        return main(list(args))
    except SystemExit as stop:
        return int(stop.code or 0)


def onnx_inputs(pixels: np.ndarray, meta: dict) -> np.ndarray:
    """The preprocessing as the metadata states it, written from the metadata alone."""
    mean = np.asarray(meta["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(meta["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    return ((pixels.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)


@pytest.mark.parametrize(
    ("run", "model", "channels", "size"),
    [("lenet", "lenet5", 1, 28), ("residual", "resnet18_cifar", 3, 32)],
)
def test_exported_model_matches_the_run_in_onnxruntime(
    trained_runs, monkeypatch, capsys, run, model, channels, size
):
    monkeypatch.chdir(trained_runs.parent)
    runs_dir = str(trained_runs)
    assert main(["export", run, "--format", "onnx", "--runs-dir", runs_dir]) == 0
    path = trained_runs / run / "model.onnx"
    assert f"wrote {path}" in capsys.readouterr().out

    trained = load_run(trained_runs / run)
    norms = [m for m in trained.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if run == "residual":  # batch norm in evaluation mode: its trained running statistics
        assert norms and any(float(m.running_mean.abs().sum()) > 0 for m in norms)
    meta = read_onnx_metadata(path)
    assert meta["model"] == model and meta["cnnlab_version"] == __version__
    assert (meta["input_channels"], meta["input_size"]) == (channels, size)
    assert meta["class_names"] == trained.classes and len(meta["class_names"]) == 10
    assert meta["mean"] == pytest.approx(trained.preprocess.mean)
    assert meta["std"] == pytest.approx(trained.preprocess.std)
    assert meta["input_scaling"] == "standard" and meta["dataset"] == trained.config.dataset
    assert meta["model_options"] == trained.spec.get("kwargs", {})

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.name == meta["input_name"] == "images"
    assert graph_input.shape[1:] == [channels, size, size]
    assert isinstance(graph_input.shape[0], str)  # the batch axis is dynamic

    test = trained.test_split()
    pixels, labels = test.images.numpy(), test.labels.numpy()
    assert pixels.dtype == np.uint8 and len(pixels) >= 200
    with torch.no_grad():
        torch_logits = trained.model(trained.preprocess(test.images)).numpy()
    onnx_logits = np.concatenate(
        [
            session.run(None, {"images": onnx_inputs(pixels[i : i + 100], meta)})[0]
            for i in range(0, len(pixels), 100)
        ]
    )
    assert onnx_logits.shape == (len(pixels), 10)
    assert np.abs(onnx_logits - torch_logits).max() < 1e-4
    onnx_accuracy = float((onnx_logits.argmax(1) == labels).mean())
    assert onnx_accuracy == pytest.approx(evaluate_run(trained).accuracy, abs=1e-12)
    if run == "lenet":  # trained: far above chance (10%); the residual net's 10 steps are not
        assert onnx_accuracy > 0.5
    for batch in (1, 7):
        out = session.run(None, {"images": onnx_inputs(pixels[:batch], meta)})[0]
        assert out.shape == (batch, 10)
        assert np.abs(out - torch_logits[:batch]).max() < 1e-4


def test_export_refuses_to_overwrite_and_writes_where_told(trained_runs, monkeypatch, capsys):
    monkeypatch.chdir(trained_runs)
    out = trained_runs / "elsewhere" / "lenet.onnx"
    out.parent.mkdir()
    assert main(["export", "lenet", "--runs-dir", ".", "--out", str(out)]) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert main(["export", "lenet", "--runs-dir", ".", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and "exists" in err
    assert main(["export", "lenet", "--runs-dir", ".", "--out", str(out), "--overwrite"]) == 0
    assert onnx.load(str(out)).graph.input[0].name == "images"
    assert len(out.read_bytes()) == len(first)
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-run"], "no such folder"),
        (["lenet", "--out", "lenet.pt"], "expected a file ending in .onnx"),
        (["lenet", "--out", "lenet/checkpoint.pt/model.onnx"], "is a file, not a folder"),
        (["lenet", "--out", "missing/model.onnx"], "does not exist"),
        (["lenet", "--format", "tflite"], "invalid choice"),
    ],
)
def test_bad_export_requests_are_one_line_errors(trained_runs, monkeypatch, capsys, args, message):
    monkeypatch.chdir(trained_runs)
    before = sorted(p.name for p in (trained_runs / "lenet").iterdir())
    assert cli("export", *args, "--runs-dir", ".") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in (trained_runs / "lenet").iterdir()) == before


def test_an_unwritable_folder_is_refused_before_the_export(trained_runs, monkeypatch, capsys):
    """root may write anywhere by its permission bits, so the check tries a real write; here
    that write is made to fail as a read-only mount fails it."""
    import tempfile

    monkeypatch.chdir(trained_runs)
    (trained_runs / "ro").mkdir()

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    assert main(["export", "lenet", "--runs-dir", ".", "--out", "ro/model.onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Read-only file system" in err and "'ro'" in err
    assert list((trained_runs / "ro").iterdir()) == []


def test_a_missing_exporter_package_is_named(trained_runs, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name)
    )
    monkeypatch.chdir(trained_runs)
    assert cli("export", "lenet", "--runs-dir", ".", "--out", "new.onnx") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'cnnlab[onnx]'" in err
    assert not (trained_runs / "new.onnx").exists()


def test_safetensors_export_holds_the_weights_and_the_preprocessing(trained_runs, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from cnnlab.models import create_model

    out = tmp_path / "lenet.safetensors"
    command = ["export", "lenet", "--format", "safetensors", "--runs-dir", str(trained_runs)]
    assert cli(*command, "--out", str(out)) == 0
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    trained = load_run("lenet", trained_runs)
    assert meta["model"] == "lenet5" and meta["dataset"] == "mnist"
    assert json.loads(meta["mean"]) == [float(v) for v in trained.preprocess.mean]
    # a model rebuilt from the metadata alone, given the file's weights, is the run's model
    options = json.loads(meta["model_options"])
    side, channels = int(meta["input_size"]), int(meta["input_channels"])
    shape = dict(num_classes=int(meta["num_classes"]), in_channels=channels, input_size=side)
    rebuilt = create_model(meta["model"], **shape, **options).eval()
    rebuilt.load_state_dict(load_file(str(out)))
    batch = torch.randn(4, channels, side, side)
    with torch.no_grad():
        assert torch.equal(rebuilt(batch), trained.model.eval()(batch))
    # never overwritten silently; the default name is beside the run
    assert cli(*command, "--out", str(out)) == 2
    assert cli(*command) == 0
    assert (trained_runs / "lenet" / "model.safetensors").is_file()
