"""A trained run as a file other tools can run: ONNX (``cnnlab export RUN --format onnx``), or
its weights alone as safetensors (``--format safetensors``: no pickle, loadable by
``safetensors.torch.load_file`` into the same architecture).

The exported graph takes what the run's model takes, a float32 ``N x C x H x W`` batch that is
already preprocessed, with a dynamic batch axis, and returns the class scores (logits). How to
preprocess travels with the file, in the ONNX model's ``metadata_props`` (see
:func:`onnx_metadata`): the pixel scaling, per-channel mean and std, the input side and
channels, the class names, the model's name and the cnnlab version that wrote it.

The graph comes from PyTorch's ``torch.export``-based exporter (``dynamo=True``, the default
since PyTorch 2.9; the TorchScript exporter warns that it will be removed). It needs an example
batch larger than one, or ``torch.export`` specializes the batch axis to 1.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__, run_folder
from ..errors import CnnlabError, reason
from ..outputs import check_output_file
from .load import TrainedRun, load_run

FORMATS = ("onnx", "safetensors")
ONNX_FILE = "model.onnx"  # the default output, in the run folder
SAFETENSORS_FILE = "model.safetensors"
DEFAULT_FILES = {"onnx": ONNX_FILE, "safetensors": SAFETENSORS_FILE}
INPUT_NAME, OUTPUT_NAME = "images", "logits"
PREPROCESSING = (
    "images: float32 N x C x H x W; per channel c, x = (pixels / 255 - mean[c]) / std[c] with "
    "pixels the uint8 values 0..255 of an image of input_channels channels resized to "
    "input_size x input_size"
)
JSON_KEYS = ("mean", "std", "class_names", "model_options")  # metadata values held as JSON
INT_KEYS = ("input_size", "input_channels", "num_classes", "epoch", "resize")


@dataclass
class ExportResult:
    """Where the file went and what it says about itself."""

    path: Path
    metadata: dict[str, str]
    bytes: int


def preprocessing_text(trained: TrainedRun) -> str:
    """:data:`PREPROCESSING`, or for a run transferred from an ImageNet model its resize of the
    shorter side to ``resize`` and central ``input_size`` crop."""
    if not trained.resize:
        return PREPROCESSING
    return PREPROCESSING.replace(
        "resized to input_size x input_size",
        f"resized so its shorter side is {trained.resize} (bilinear), then its central "
        "input_size x input_size square cropped",
    )


def onnx_metadata(trained: TrainedRun) -> dict[str, str]:
    """The run's preprocessing and labels as ONNX ``metadata_props`` (strings; lists as JSON)."""
    spec = trained.spec
    return {
        "producer": "cnnlab",
        "cnnlab_version": __version__,
        "model": str(spec["name"]),
        "model_options": json.dumps(spec.get("kwargs", {}), sort_keys=True),
        "dataset": trained.config.dataset,
        "epoch": str(trained.epoch),
        "input_name": INPUT_NAME,
        "input_layout": "NCHW",
        "input_channels": str(trained.in_channels),
        "input_size": str(trained.input_size),
        "input_scaling": trained.config.input_scaling,
        "mean": json.dumps([float(v) for v in trained.preprocess.mean]),
        "std": json.dumps([float(v) for v in trained.preprocess.std]),
        "preprocessing": preprocessing_text(trained),
        "resize": str(trained.resize or trained.input_size),
        "output_name": OUTPUT_NAME,
        "num_classes": str(spec["num_classes"]),
        "class_names": json.dumps(list(trained.classes)),
    }


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An exported file's ``metadata_props``, with lists decoded and counts as integers."""
    onnx = _require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf's decode errors have no common type
        raise CnnlabError(f"{path}: not a readable ONNX file ({reason(err)[:160]})") from None
    values: dict[str, Any] = {entry.key: entry.value for entry in model.metadata_props}
    for key in JSON_KEYS:
        if key in values:
            values[key] = json.loads(values[key])
    for key in INT_KEYS:
        if key in values:
            values[key] = int(values[key])
    return values


def export_onnx(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    runs_root: Path = Path("runs"),
) -> ExportResult:
    """Write run ``run``'s model as ONNX to ``out`` (default ``RUN/model.onnx``).

    Every check comes before the export: the run folder, the output path (an ``.onnx`` name in
    a writable folder) and an existing file, which is replaced only with ``overwrite``.
    """
    onnx = _require("onnx")
    _require("onnxscript")  # the torch.export-based exporter builds the graph with it
    trained = _checked_run(run, out, overwrite, runs_root, ONNX_FILE)
    path = _output_path(trained.run_dir, out, ONNX_FILE)
    model = trained.model.eval()
    example = torch.zeros(2, trained.in_channels, trained.input_size, trained.input_size)
    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        proto = program.model_proto
    except Exception as err:  # torch.export's failures come in many types
        raise CnnlabError(
            f"run {trained.run_dir} (model {trained.spec['name']}) cannot be exported to ONNX: "
            f"{reason(err)[:200]}; report this with the model's name"
        ) from None
    metadata = onnx_metadata(trained)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (
        f"cnnlab run {trained.run_dir.name}: {trained.spec['name']} trained on "
        f"{trained.config.dataset}. Input {INPUT_NAME!r}: {preprocessing_text(trained)}. Output "
        f"{OUTPUT_NAME!r}: N x {trained.spec['num_classes']} class scores (logits)."
    )
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    run_folder.atomic_write(path, lambda handle: handle.write(data))
    return ExportResult(path, metadata, len(data))


def export_safetensors(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    runs_root: Path = Path("runs"),
) -> ExportResult:
    """Write run ``run``'s weights (its ``state_dict``) as safetensors to ``out`` (default
    ``RUN/model.safetensors``), with the same metadata as the ONNX export in the file's header.

    The file holds tensors only, never code: build the model with
    ``cnnlab.models.create_model`` from the metadata's ``model``, ``num_classes``,
    ``input_channels``, ``input_size`` and ``model_options``, then ``load_state_dict`` it.
    """
    save = _require("safetensors.torch", "safetensors").save
    trained = _checked_run(run, out, overwrite, runs_root, SAFETENSORS_FILE)
    path = _output_path(trained.run_dir, out, SAFETENSORS_FILE)
    # safetensors refuses tensors that share memory (tied weights) and views: each is its own copy
    tensors = {
        k: v.detach().cpu().contiguous().clone() for k, v in trained.model.state_dict().items()
    }
    metadata = {**onnx_metadata(trained), "format": "safetensors: the model's state_dict"}
    data = save(tensors, metadata=metadata)
    run_folder.atomic_write(path, lambda handle: handle.write(data))
    return ExportResult(path, metadata, len(data))


def export_run(
    run: str | os.PathLike[str],
    format: str = "onnx",
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    runs_root: Path = Path("runs"),
) -> ExportResult:
    """Export ``run`` in ``format`` (one of :data:`FORMATS`)."""
    if format not in FORMATS:
        raise CnnlabError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    writer = export_onnx if format == "onnx" else export_safetensors
    return writer(run, out, overwrite, runs_root)


def _output_path(run_dir: Path, out: str | os.PathLike[str] | None, default: str) -> Path:
    return Path(out) if out is not None else run_dir / default


def _checked_run(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    overwrite: bool,
    runs_root: Path,
    default: str,
) -> TrainedRun:
    """The run, loaded once the output path (``default`` in the run folder unless ``out``, with
    the default's suffix) is known to be writable and free, or ``overwrite`` says replace it."""
    run_dir = run_folder.resolve_run(run, runs_root)
    path = _output_path(run_dir, out, default)
    check_output_file(path, "--out", (Path(default).suffix,))
    if path.exists() and not overwrite:
        raise CnnlabError(
            f"--out {str(path)!r}: the file exists; pass --overwrite to replace it, or give "
            "another --out"
        )
    return load_run(run_dir, runs_root)


def _require(module: str, extra: str = "onnx") -> Any:
    if importlib.util.find_spec(module.split(".")[0]) is None:
        what = "ONNX export" if extra == "onnx" else f"{extra} export"
        raise CnnlabError(
            f"{what} needs the {module.split('.')[0]!r} package, which is not installed; "
            f"pip install 'cnnlab[{extra}]'"
        )
    return importlib.import_module(module)


__all__ = [
    "DEFAULT_FILES",
    "FORMATS",
    "ONNX_FILE",
    "SAFETENSORS_FILE",
    "ExportResult",
    "export_onnx",
    "export_run",
    "export_safetensors",
    "onnx_metadata",
    "read_onnx_metadata",
]
