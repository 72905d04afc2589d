"""The explorer's work, apart from HTTP: the runs it opened at start-up and what each request
computes from them. Every view comes from :mod:`cnnlab.inspect` (feature maps through
``capture``, Grad-CAM, the summary table) and :mod:`cnnlab.arithmetic`; this module checks the
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

from .. import arithmetic
from .. import runs as run_files
from .._tracing import model_call
from ..errors import CnnlabError
from ..experiment import TrainedRun, load_run
from ..images import DECODE_ERRORS, fit_to_input
from ..inspect import capture, grad_cam
from ..inspect.arithmetic import axis_problem, axis_size
from ..inspect.summary import summary
from .pictures import colour, image_png, overlay, png, sprite

MAX_UPLOAD_BYTES = 5 * 2**20  # 5 MiB
MAX_UPLOAD_PIXELS = 25_000_000  # width x height; larger files are decompression bombs here
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
MAX_MAPS_PER_LAYER = 16
# the bounds /api/arithmetic accepts for each of its numbers
ARITHMETIC_BOUNDS = {
    "n": (1, 4096),
    "kernel": (1, 512),
    "stride": (1, 512),
    "padding": (0, 512),
    "dilation": (1, 64),
    "in_channels": (1, 4096),
    "out_channels": (1, 4096),
}


class Refusal(Exception):
    """A request the explorer will not answer: ``status`` (404, 413, 415, 422, ...) and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class LoadedRun:
    name: str
    path: Path
    trained: TrainedRun
    lock: threading.Lock = field(default_factory=threading.Lock)  # the model's hooks, weights
    data_lock: threading.Lock = field(default_factory=threading.Lock)  # the test set, once
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None


def unshowable(path: Path, error: CnnlabError) -> str:
    """Why the explorer cannot show the run at ``path`` (which ``load_run`` refused)."""
    try:
        state = run_files.load_checkpoint(path / run_files.CHECKPOINT, required=("kind",))
    except CnnlabError:
        return str(error)
    see = f"; `cnnlab graph show {path}` draws it" if state["kind"] == "nodes" else ""
    return f"a graph (GCN) run; the explorer shows image classifiers only{see}"


class Explorer:
    """The runs being shown (by name) and the work of every endpoint on them."""

    def __init__(self, runs: dict[str, LoadedRun], skipped: list[str], data_dir: str | None):
        self.runs, self.skipped, self.data_dir = runs, skipped, data_dir

    @classmethod
    def open(cls, run_dirs: list[Path], data_dir: str | None = None) -> Explorer:
        """Open each run folder now. Runs the explorer cannot show (graph runs, checkpoints
        that do not load) are left out, one line each in ``skipped``; a CnnlabError when none
        is left."""
        runs: dict[str, LoadedRun] = {}
        skipped: list[str] = []
        for path in map(Path, run_dirs):
            name = path.name
            if name in runs:
                raise CnnlabError(f"two runs are called {name!r}; serve them from different names")
            try:
                if not (path / run_files.CHECKPOINT).is_file():
                    raise CnnlabError(f"not a finished run folder (no {run_files.CHECKPOINT})")
                trained = load_run(path)
            except CnnlabError as error:
                skipped.append(f"{name}: {unshowable(path, error)}")
                continue
            runs[name] = LoadedRun(name, path, trained)
        if not runs:
            raise CnnlabError(
                f"none of the {len(skipped)} run(s) can be shown ({'; '.join(skipped)}); train "
                "an image classifier with `cnnlab train`"
            )
        return cls(runs, skipped, data_dir)

    # ------------------------------------------------------------------ runs and their data

    def get(self, name: str) -> LoadedRun:
        run = self.runs.get(name)
        if run is None:
            raise Refusal(404, f"no run named {name!r}; known: {', '.join(self.runs)}")
        return run

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, run in self.runs.items():
            t = run.trained
            out.append(
                {
                    "name": name,
                    "model": t.spec["name"],
                    "dataset": t.config.dataset,
                    "classes": t.classes,
                    "in_channels": t.in_channels,
                    "input_size": t.input_size,
                    "epoch": t.epoch,
                }
            )
        return out

    def summary(self, name: str) -> dict[str, Any]:
        run = self.get(name)
        t = run.trained
        with run.lock:  # summary() traces under tracing(): never beside a model call
            report = summary(t.model, f"{t.in_channels}x{t.input_size}x{t.input_size}", name)
        return report.to_dict()

    def sample(self, name: str, index: int) -> dict[str, Any]:
        run = self.get(name)
        with run.data_lock:
            if run.test_images is None:
                test = run.trained.test_split(self.data_dir)
                run.test_images, run.test_labels = test.images, test.labels
        if not 0 <= index < len(run.test_images):
            raise Refusal(404, f"test images are 0..{len(run.test_images) - 1}")
        label = int(run.test_labels[index])
        return {
            "pixels": run.test_images[index].tolist(),
            "label": label,
            "class": run.trained.classes[label],
        }

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
                array, notes = fit_to_input(image, t.in_channels, t.input_size)
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

    def analyze(self, name: str, pixels: list[Any]) -> dict[str, Any]:
        run = self.get(name)
        image = self.as_input(run, pixels)
        t = run.trained
        with run.lock, model_call(), torch.no_grad(), capture(t.model) as record:
            logits = t.model(t.preprocess(image[None]))
        probs = torch.softmax(logits, 1)[0]
        layers = []
        for layer, out in record["outputs"].items():
            maps = out[0]
            if maps.ndim != 3:
                continue
            shown = maps[:MAX_MAPS_PER_LAYER]
            layers.append(
                {
                    "name": layer,
                    "shape": list(maps.shape),
                    "count": len(shown),
                    "sprite": png(sprite(shown.numpy())),
                    "min": float(maps.min()),
                    "max": float(maps.max()),
                }
            )
        ranked = [
            {"class": c, "index": i, "p": float(p)}
            for i, (c, p) in enumerate(zip(t.classes, probs))
        ]
        return {
            "probabilities": ranked,
            "predicted": int(probs.argmax()),
            "input": image_png(image),
            "layers": layers,
        }

    def cam(
        self, name: str, pixels: list[Any], class_index: int | None, layer: str | None
    ) -> dict[str, Any]:
        run = self.get(name)
        image = self.as_input(run, pixels)
        t = run.trained
        if class_index is not None and not 0 <= class_index < len(t.classes):
            raise Refusal(422, f"class_index must be in 0..{len(t.classes) - 1}")
        if layer is not None and layer not in dict(t.model.named_modules()):
            raise Refusal(422, f"no layer named {layer!r}")
        with run.lock, model_call():
            result = grad_cam(t.model, t.preprocess(image[None])[0], class_index, layer)
        heat = result.heatmap.numpy()
        return {
            "class_index": result.class_index,
            "class": t.classes[result.class_index],
            "probability": result.probability,
            "layer": result.layer,
            "overlay": png(overlay(image, heat)),
            "heatmap": png(colour(heat)),
        }

    def kernel(
        self, name: str, pixels: list[Any], layer: str, channel: int, y: int, x: int
    ) -> dict[str, Any]:
        run = self.get(name)
        image = self.as_input(run, pixels)
        t = run.trained
        module = dict(t.model.named_modules()).get(layer)
        if not isinstance(module, torch.nn.Conv2d) or module.groups != 1:
            convs = [n for n, m in t.model.named_modules() if isinstance(m, torch.nn.Conv2d)]
            raise Refusal(422, f"layer must be one of the convolutions: {', '.join(convs)}")
        with (
            run.lock,
            model_call(),
            torch.no_grad(),
            capture(t.model, [layer], inputs=True) as record,
        ):
            t.model(t.preprocess(image[None]))
        out, given = record["outputs"][layer][0], record["inputs"][layer][0]
        c_out, height, width = out.shape
        if channel >= c_out or y >= height or x >= width:
            raise Refusal(422, f"channel, y, x must be below {c_out}, {height}, {width}")
        return {"layer": layer} | one_output(module, given, out, channel, y, x)


def one_output(
    conv: torch.nn.Conv2d, x: torch.Tensor, out: torch.Tensor, channel: int, row: int, col: int
) -> dict[str, Any]:
    """Output ``(channel, row, col)`` of ``conv`` on its input ``x`` (``C x H x W``) computed in
    the open: the kernel, the input patch under it, their element-wise products and the sum
    (+ bias), next to the value the layer gave (``out``)."""
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    dh, dw = conv.dilation
    padded = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    top, left = row * sh, col * sw
    patch = padded[:, top : top + dh * (kh - 1) + 1 : dh, left : left + dw * (kw - 1) + 1 : dw]
    weights = conv.weight[channel].detach()
    products = patch * weights
    bias = float(conv.bias[channel].detach()) if conv.bias is not None else 0.0
    total = float(products.sum()) + bias
    return {
        "channel": channel,
        "y": row,
        "x": col,
        "kernel": weights.tolist(),
        "patch": patch.tolist(),
        "products": products.tolist(),
        "bias": bias,
        "sum": total,
        "output": float(out[channel, row, col]),
        "window": {"top": top - ph, "left": left - pw, "height": kh, "width": kw},
        "formula": f"sum of {products.numel()} products + bias {bias:.4f} = {total:.4f}",
    }


def conv_arithmetic(
    n: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    in_channels: int,
    out_channels: int,
) -> dict[str, Any]:
    """Output size of a square 2-D convolution with the formula filled in (or what is wrong
    and how to fix it), its parameters and multiply-adds, from :mod:`cnnlab.arithmetic`."""
    given = {
        "n": n,
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "in_channels": in_channels,
        "out_channels": out_channels,
    }
    for label, (low, high) in ARITHMETIC_BOUNDS.items():
        if not low <= given[label] <= high:
            raise Refusal(422, f"{label}={given[label]}: expected {low}..{high}")
    axis = axis_size(n, kernel, stride, (padding, padding), dilation)
    problem = axis_problem(axis, "output size")
    out = axis.out if axis.fits else 0
    params = arithmetic.conv_params(in_channels, out_channels, kernel)
    macs = arithmetic.conv_macs(in_channels, out_channels, kernel, (out, out))
    return {
        "out": out,
        "formula": axis.formula(),
        "valid": problem is None,
        "problem": problem,
        "extent": axis.extent,
        "padded": axis.padded,
        "params": params,
        "params_formula": f"{kernel}*{kernel}*{in_channels}*{out_channels} + {out_channels}"
        f" = {params:,}",
        "macs": macs,
        "macs_formula": f"{out}x{out}x{out_channels} outputs x "
        f"{kernel}*{kernel}*{in_channels} = {macs:,}",
    }
