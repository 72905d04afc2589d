"""The explorer's work, apart from HTTP: the models it opened at start-up (trained runs, or any
model :func:`cnnlab.trained.load_source` loads) and what each request computes from them.
Every view comes from :mod:`cnnlab.inspect` (feature maps, Grad-CAM, the summary table), the
explanations of :mod:`.explain` and the playground of :mod:`.playground`; this module checks the
input, holds the locks and shapes the answers as JSON-ready dicts.

A request the explorer refuses raises :class:`Refusal` (an HTTP status and a message);
:mod:`.app` answers it as ``{"detail": message}``.

Threads: a lock per run keeps two requests from sharing a model's hooks (or the summary's meta
weights) at once, and every model call holds :func:`cnnlab._tracing.model_call`, so no call
runs while ``torch.fx`` traces a model for the layer table (the trace swaps
``nn.Module.__call__`` for the whole process).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image

from .. import runs as run_files
from .._tracing import model_call
from ..errors import CnnlabError
from ..images import DECODE_ERRORS, fit_resized_crop
from ..inspect import capture, grad_cam
from ..inspect.summary import summary
from ..models import names_a_model
from ..models.binary import class_probabilities
from ..trained import ModelSource, load_source
from .explain import SOFTMAX, Unexplained, explain, softmax_layer
from .gradient import kernel_gradient
from .layers import layer_kind, layer_label, record
from .pictures import COLORMAPS, colour, image_png, legend, overlay, png, sprite
from .report import build_report

MAX_UPLOAD_BYTES = 5 * 2**20  # 5 MiB
MAX_UPLOAD_PIXELS = 25_000_000  # width x height; larger files are decompression bombs here
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
DEFAULT_CHANNELS = 16  # maps per layer in /analyze unless the request asks for more
MAX_CHANNELS = 1024


class Refusal(Exception):
    """A request the explorer will not answer: ``status`` (404, 413, 415, 422, ...) and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class LoadedRun:
    """A model being shown: a trained run (``source.run`` set) or a model source."""

    name: str
    source: ModelSource
    lock: threading.Lock = field(default_factory=threading.Lock)  # the model's hooks, weights
    data_lock: threading.Lock = field(default_factory=threading.Lock)  # the test set, once
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # the report, once

    @property
    def trained(self) -> ModelSource:  # the name the views below were written with
        return self.source

    @property
    def metrics(self) -> Path | None:
        run_dir = self.source.run_dir
        return run_dir / run_files.METRICS if run_dir is not None else None


def unshowable(path: Path, error: CnnlabError) -> str:
    """Why the explorer cannot show the run at ``path`` (which ``load_run`` refused)."""
    try:
        state = run_files.load_checkpoint(path / run_files.CHECKPOINT, required=("kind",))
    except CnnlabError:
        return str(error)
    see = f"; `cnnlab graph show {path}` draws it" if state["kind"] == "nodes" else ""
    return f"a graph (GCN) run; the explorer shows image classifiers only{see}"


def open_one(item: Path | str, seed: int, weights: bool) -> tuple[str, ModelSource]:
    """A run folder (a ``Path``) or a model source (a ``str`` that names a model) loaded."""
    if isinstance(item, str) and names_a_model(item):
        return item, load_source(item, seed=seed, weights=weights)
    path = Path(item)
    if not (path / run_files.CHECKPOINT).is_file():
        raise CnnlabError(f"not a finished run folder (no {run_files.CHECKPOINT})")
    try:
        return path.name, load_source(str(path.absolute()))
    except CnnlabError as error:
        raise CnnlabError(unshowable(path, error)) from None


class Explorer:
    """The models being shown (by name) and the work of every endpoint on them."""

    def __init__(self, runs: dict[str, LoadedRun], skipped: list[str], data_dir: str | None):
        self.runs, self.skipped, self.data_dir = runs, skipped, data_dir

    @classmethod
    def open(
        cls,
        sources: list[Path | str],
        data_dir: str | None = None,
        seed: int = 0,
        weights: bool = False,
    ) -> Explorer:
        """Open each run folder (a ``Path``) and model source (a ``str`` naming a registered
        model, ``torchvision:NAME`` or ``module:callable``) now. Runs the explorer cannot show
        (graph runs, checkpoints that do not load) are left out, one line each in ``skipped``;
        a model source that does not load is a CnnlabError (it was named on purpose), as is
        having nothing left to show."""
        runs: dict[str, LoadedRun] = {}
        skipped: list[str] = []
        for item in sources:
            is_model = isinstance(item, str) and names_a_model(item)
            name = item if is_model else Path(item).name
            if name in runs:
                raise CnnlabError(f"two runs are called {name!r}; serve them from different names")
            try:
                name, source = open_one(item, seed, weights)
            except CnnlabError as error:
                if is_model:
                    raise
                skipped.append(f"{name}: {error}")
                continue
            runs[name] = LoadedRun(name, source)
        if not runs:
            raise CnnlabError(
                f"none of the {len(skipped)} run(s) can be shown ({'; '.join(skipped)}); train "
                "an image classifier with `cnnlab train`, or name a model (e.g. resnet18)"
            )
        return cls(runs, skipped, data_dir)

    # ------------------------------------------------------------------ runs and their data

    def get(self, name: str) -> LoadedRun:
        run = self.runs.get(name)
        if run is None:
            raise Refusal(
                404,
                f"no run named {name!r}; expected one of: {', '.join(self.runs)} (GET /api/runs)",
            )
        return run

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, run in self.runs.items():
            s, trained = run.source, run.source.run
            out.append(
                {
                    "name": name,
                    "source": "run" if trained else "model",
                    "label": s.label,
                    "model": trained.spec["name"] if trained else name,
                    "dataset": trained.config.dataset if trained else None,
                    "classes": s.classes,
                    "input": {"channels": s.in_channels, "size": s.input_size},
                    "in_channels": s.in_channels,
                    "input_size": s.input_size,
                    "epoch": trained.epoch if trained else None,
                    "has_samples": trained is not None,
                    "has_history": bool(run.metrics and run.metrics.is_file()),
                    "notes": list(s.notes or []),
                }
            )
        return out

    def summary(self, name: str) -> dict[str, Any]:
        run = self.get(name)
        t = run.trained
        with run.lock:  # summary() traces under tracing(): never beside a model call
            report = summary(t.model, f"{t.in_channels}x{t.input_size}x{t.input_size}", name)
        return report.to_dict()

    def test_set(self, run: LoadedRun) -> tuple[torch.Tensor, torch.Tensor]:
        """The run's test images and labels, read once."""
        if run.source.run is None:
            raise Refusal(
                422,
                f"{run.name} is a model, not a trained run: it has no test images; upload an "
                "image or draw one instead",
            )
        with run.data_lock:
            if run.test_images is None:
                test = run.source.test_split(self.data_dir)
                run.test_images, run.test_labels = test.images, test.labels
        return run.test_images, run.test_labels

    def sample(self, name: str, index: int) -> dict[str, Any]:
        run = self.get(name)
        images, labels = self.test_set(run)
        if not 0 <= index < len(images):
            raise Refusal(
                404,
                f"index {index}: expected a test image number 0..{len(images) - 1}; pick one "
                "in that range",
            )
        label = int(labels[index])
        return {
            "pixels": images[index].tolist(),
            "label": label,
            "class": run.trained.classes[label],
        }

    def report(self, name: str) -> dict[str, Any]:
        """Learning curves, confusion matrix, accuracy per class and the most confident
        mistakes (:func:`.report.build_report`), computed once per run."""
        run = self.get(name)
        if run.source.run is None:
            raise Refusal(
                422,
                f"{name} is a model, not a trained run: it has no training history; serve a "
                "run folder from `cnnlab train` to see its report",
            )
        with run.data_lock:
            cached = run.cache.get("report")
        if cached is not None:
            return cached
        images, labels = self.test_set(run)
        with run.lock:
            with run.data_lock:  # another request may have built it meanwhile
                if "report" in run.cache:
                    return run.cache["report"]
            built = build_report(run.source, images, labels, run.metrics)
            with run.data_lock:
                run.cache["report"] = built
        return built

    def upload(self, name: str, stream: BinaryIO) -> dict[str, Any]:
        run = self.get(name)
        data = stream.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise Refusal(413, f"upload larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in UPLOAD_FORMATS:
                    raise Refusal(415, f"{image.format} images are not accepted")
                width, height = image.size
                if width * height > MAX_UPLOAD_PIXELS:
                    raise Refusal(413, f"image of {width}x{height} pixels is too large")
                image.load()
                t = run.trained
                array, notes = fit_resized_crop(image, t.in_channels, t.input_size, t.resize)
        except Image.DecompressionBombError:
            raise Refusal(413, "the image has too many pixels (decompression bomb)") from None
        except DECODE_ERRORS:
            raise Refusal(400, "the upload is not a readable PNG or JPEG image") from None
        return {"pixels": array.tolist(), "notes": notes}

    def as_input(self, run: LoadedRun, pixels: list[Any]) -> torch.Tensor:
        """The client's 0..255 pixels as this run's uint8 ``C x H x W`` input."""
        trained = run.trained
        try:
            array = np.asarray(pixels, dtype=np.float64)
        except (ValueError, TypeError):
            raise Refusal(422, "pixels must be a rectangular array of numbers") from None
        if array.ndim == 2:
            array = array[None]
        expected = (trained.in_channels, trained.input_size, trained.input_size)
        if array.shape != expected:
            raise Refusal(
                422,
                f"pixels have shape {list(array.shape)}; this run expects "
                f"{list(expected)} (C x H x W, or H x W for gray)",
            )
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
            raise Refusal(422, "pixel values must be numbers in 0..255")
        return torch.as_tensor(array.round().astype(np.uint8))

    # ------------------------------------------------------------------ views of one image

    def analyze(self, name: str, pixels: list[Any], channels: int = DEFAULT_CHANNELS) -> dict:
        """Logits, probabilities and every layer's output: maps (C x H x W) as one sprite of the
        first ``channels`` maps, each scaled to its own range (a constant map mid-gray), with
        their ranges; vectors (N) as their first ``channels`` values."""
        run = self.get(name)
        image = self.as_input(run, pixels)
        t = run.trained
        modules = dict(t.model.named_modules())
        with run.lock, model_call(), torch.no_grad(), capture(t.model) as recorded:
            logits = t.model(t.preprocess(image[None]))
        probs = class_probabilities(logits)[0]  # a binary head: 2 classes
        layers = [
            layer_view(layer, modules.get(layer), out[0], channels)
            for layer, out in recorded["outputs"].items()
            if out[0].ndim in (1, 3)
        ]
        if softmax_layer(t.model) is None:
            layers.append(layer_view(SOFTMAX, None, probs, channels))
        ranked = [
            {"class": c, "index": i, "p": float(p)}
            for i, (c, p) in enumerate(zip(t.classes, probs))
        ]
        return {
            "probabilities": ranked,
            "logits": logits[0].tolist(),
            "predicted": int(probs.argmax()),
            "prediction": {
                "index": int(probs.argmax()),
                "class": t.classes[int(probs.argmax())],
                "p": float(probs.max()),
            },
            "input": image_png(image),
            "layers": layers,
        }

    def cam(
        self,
        name: str,
        pixels: list[Any],
        class_index: int | None,
        layer: str | None,
        colormap: str = "viridis",
    ) -> dict[str, Any]:
        run = self.get(name)
        image = self.as_input(run, pixels)
        t = run.trained
        if class_index is not None and not 0 <= class_index < len(t.classes):
            raise Refusal(
                422,
                f"class_index {class_index}: expected 0..{len(t.classes) - 1}; leave it out for "
                "the predicted class",
            )
        if layer is not None and layer not in dict(t.model.named_modules()):
            raise Refusal(
                422,
                f"layer {layer!r}: no layer of that name; leave it out for the last convolution",
            )
        if colormap not in COLORMAPS:
            raise Refusal(422, f"colormap {colormap!r}: expected one of {', '.join(COLORMAPS)}")
        with run.lock, model_call():
            result = grad_cam(t.model, t.preprocess(image[None])[0], class_index, layer)
        heat = result.heatmap.numpy()
        return {
            "class_index": result.class_index,
            "class": t.classes[result.class_index],
            "probability": result.probability,
            "layer": result.layer,
            "overlay": png(overlay(image, heat, colormap)),
            "heatmap": png(colour(heat, colormap)),
            "legend": legend(colormap),
        }

    def explain(
        self, name: str, pixels: list[Any], layer: str, channel: int, y: int, x: int
    ) -> dict[str, Any]:
        """One output number of ``layer`` computed in the open (:func:`.explain.explain`)."""
        run = self.get(name)
        image = self.as_input(run, pixels)
        t = run.trained
        with run.lock, model_call():
            recording = record(t.model, t.preprocess(image[None]))
        try:
            return explain(t.model, recording, layer, channel, y, x)
        except Unexplained as why:
            raise Refusal(422, str(why)) from None

    def gradient(
        self, name: str, pixels: list[Any], layer: str, channel: int, class_index: int | None
    ) -> dict[str, Any]:
        """dLoss/dKernel of one convolution output channel (:func:`.explain.kernel_gradient`)."""
        run = self.get(name)
        image = self.as_input(run, pixels)
        t = run.trained
        try:
            with run.lock, model_call():
                return kernel_gradient(
                    t.model, t.preprocess(image[None]), layer, channel, class_index
                )
        except Unexplained as why:
            raise Refusal(422, str(why)) from None

    def kernel(
        self, name: str, pixels: list[Any], layer: str, channel: int, y: int, x: int
    ) -> dict[str, Any]:
        """The first explorer's one-pixel arithmetic of a convolution, from :meth:`explain`:
        the kernel, patch and products as ``C x kh x kw`` lists and the sum."""
        t = self.get(name).trained
        if not isinstance(dict(t.model.named_modules()).get(layer), torch.nn.Conv2d):
            convs = [n for n, m in t.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
            raise Refusal(
                422, f"layer {layer!r}: expected one of the convolutions: {', '.join(convs)}"
            )
        told = self.explain(name, pixels, layer, channel, y, x)
        parts = told["channels"]
        count = sum(np.size(c["products"]) for c in parts)
        return {
            "layer": layer,
            "channel": channel,
            "y": y,
            "x": x,
            "kernel": [c["kernel"] for c in parts],
            "patch": [c["patch"] for c in parts],
            "products": [c["products"] for c in parts],
            "bias": told["bias"],
            "sum": told["sum"],
            "output": told["value"],
            "window": told["window"],
            "formula": f"sum of {count} products + bias {told['bias']:.4f} = {told['sum']:.4f}",
        }


def layer_view(name: str, module: torch.nn.Module | None, out: torch.Tensor, channels: int):
    """One layer of /analyze: kind, label, shape, and its maps (or values) up to ``channels``."""
    shape = list(out.shape)
    shown = out[:channels]
    view: dict[str, Any] = {
        "name": name,
        "kind": layer_kind(module) if module is not None else "softmax",
        "label": layer_label(name, module, shape),
        "shape": shape,
        "channels_total": shape[0],
        "channels_shown": len(shown),
        "count": len(shown),
        "layer_min": float(out.min()),
        "layer_max": float(out.max()),
        "min": float(out.min()),
        "max": float(out.max()),
    }
    if out.ndim == 3:
        lows, highs = shown.amin((1, 2)), shown.amax((1, 2))
        view["maps"] = [
            {"min": float(lo), "max": float(hi), "constant": bool(lo == hi)}
            for lo, hi in zip(lows, highs)
        ]
        view["sprite"] = png(sprite(shown.numpy()))
    else:  # a vector: each value a 1x1 tile, on the layer's one scale
        view["maps"] = []
        view["values"] = shown.tolist()
        view["sprite"] = png(shown.numpy()[None].astype(np.float32), view["min"], view["max"])
    return view
