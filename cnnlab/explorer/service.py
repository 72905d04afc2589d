"""The explorer's work, apart from HTTP: the models it opened at start-up (trained runs, or any
model :func:`cnnlab.runs.sources.load_source` loads) and what each request computes from them.
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

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from .. import run_folder as run_files
from .._tracing import model_call
from ..errors import CnnlabError
from ..inspect import grad_cam
from ..inspect.summary import summary
from ..inspect.trace import Trace, record_trace
from ..inspect.trace_explain import channel_contributions, explain_value
from ..inspect.trace_gradient import step_gradient
from ..models import names_a_model
from ..models.binary import class_probabilities
from ..runs.sources import ModelSource, load_source
from .png import COLORMAPS, colour, image_png, legend, overlay, png, sprite_on_scale
from .problems import Refusal
from .report import build_report
from .step_views import step_view
from .uploads import read_upload

DEFAULT_CHANNELS = 16  # maps per layer in /analyze unless the request asks for more
MAX_CHANNELS = 1024
TRACES_KEPT = 3  # recorded forward passes kept per run


@dataclass
class LoadedRun:
    """A model being shown: a trained run (``source.run`` set) or a model source."""

    name: str
    source: ModelSource
    lock: threading.Lock = field(default_factory=threading.Lock)  # the model's hooks, weights
    data_lock: threading.Lock = field(default_factory=threading.Lock)  # the test set, once
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # the report, summary, modules

    def kept(self, key: str, make: Any) -> Any:
        """``make()`` computed once per model object (a run re-opened, or its model swapped for
        other weights, computes it again: the entry names the model it was made from)."""
        entry = self.cache.get(key)
        if entry is None or entry[0] is not self.source.model:
            entry = self.cache[key] = (self.source.model, make())
        return entry[1]

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        """The model's layers by name, listed once."""
        return self.kept("modules", lambda: dict(self.source.model.named_modules()))

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
        """The layer table, traced once per model (:meth:`LoadedRun.kept`)."""
        run = self.get(name)
        t = run.trained
        shape = f"{t.in_channels}x{t.input_size}x{t.input_size}"
        with run.lock:  # summary() traces under tracing(): never beside a model call
            return run.kept(f"summary {shape}", lambda: summary(t.model, shape, name).to_dict())

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

    def upload(self, name: str, stream: BinaryIO, fit: str = "crop") -> dict[str, Any]:
        """An uploaded picture as this run's input (:func:`.uploads.read_upload`)."""
        return read_upload(stream, self.get(name).source, fit)

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
        trace = self.trace(run, image)
        probs = class_probabilities(trace.logits)[0]  # a binary head: 2 classes
        shown = [s for s in trace.steps.values() if s.output.ndim in (1, 3)]
        layers = [step_view(step, channels, len(shown)) for step in shown]
        ranked = [
            {"class": c, "index": i, "p": float(p)}
            for i, (c, p) in enumerate(zip(t.classes, probs))
        ]
        return {
            "probabilities": ranked,
            "logits": trace.logits[0].tolist(),
            "predicted": int(probs.argmax()),
            "prediction": {
                "index": int(probs.argmax()),
                "class": t.classes[int(probs.argmax())],
                "p": float(probs.max()),
            },
            "input": image_png(image),
            "normalisation": normalisation(run.trained.preprocess, run.trained.in_channels),
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
        if layer is not None and layer not in run.modules:
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

    def trace(self, run: LoadedRun, image: torch.Tensor) -> Trace:
        """Every step of ``run``'s model on ``image`` (uint8 C x H x W), recorded once per image
        (the last few kept: the page asks about one image many times)."""
        key = image.numpy().tobytes()
        traces = run.kept("traces", dict)
        found = traces.get(key)
        if found is None:
            with run.lock:
                found = record_trace(run.trained.model, run.trained.preprocess(image[None]))
            while len(traces) >= TRACES_KEPT:
                traces.pop(next(iter(traces)), None)
            traces[key] = found
        return found

    def explain(
        self, name: str, pixels: list[Any], layer: str, channel: int, y: int, x: int
    ) -> dict[str, Any]:
        """One output number of step ``layer`` computed in the open
        (:func:`cnnlab.inspect.trace_explain.explain_value`)."""
        run = self.get(name)
        trace = self.trace(run, self.as_input(run, pixels))
        try:
            return explain_value(trace, layer, channel, y, x)
        except CnnlabError as why:
            raise Refusal(422, str(why)) from None

    def contributions(
        self, name: str, pixels: list[Any], layer: str, channel: int, limit: int
    ) -> dict[str, Any]:
        """One convolution output map as the sum of its input channels' maps plus the bias
        (:func:`cnnlab.inspect.trace_explain.channel_contributions`), drawn on one scale."""
        run = self.get(name)
        trace = self.trace(run, self.as_input(run, pixels))
        try:
            parts = channel_contributions(trace, layer, channel, limit)
        except CnnlabError as why:
            raise Refusal(422, str(why)) from None
        maps = parts.pop("maps")
        together = torch.cat([maps, parts["sum"][None], parts["output"][None]])
        low, high = float(together.min()), float(together.max())
        return parts | {
            "sum": png(parts["sum"].numpy(), low, high),
            "output": png(parts["output"].numpy(), low, high),
            "sprite": png(sprite_on_scale(maps.numpy()), low, high),
            "ranges": [{"min": float(m.min()), "max": float(m.max())} for m in maps],
            "min": low,
            "max": high,
        }

    def gradient(
        self, name: str, pixels: list[Any], layer: str, channel: int, class_index: int | None
    ) -> dict[str, Any]:
        """The backward view of one convolution channel, linear output or pooling channel
        (:func:`cnnlab.inspect.trace_gradient.step_gradient`)."""
        run = self.get(name)
        trace = self.trace(run, self.as_input(run, pixels))
        try:
            with run.lock:
                return step_gradient(trace, layer, channel, class_index)
        except CnnlabError as why:
            raise Refusal(422, str(why)) from None

    def kernel(
        self, name: str, pixels: list[Any], layer: str, channel: int, y: int, x: int
    ) -> dict[str, Any]:
        """The first explorer's one-pixel arithmetic of a convolution, from :meth:`explain`:
        the kernel, patch and products as ``C x kh x kw`` lists and the sum."""
        modules = self.get(name).modules
        if not isinstance(modules.get(layer), torch.nn.Conv2d):
            convs = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)]
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


def normalisation(preprocess: Any, channels: int) -> dict[str, Any] | None:
    """How the 0..255 pixels become the model's input: ``(x / 255 - mean) / std`` per channel,
    or ``None`` for a preprocessing cnnlab cannot describe."""
    mean, std = getattr(preprocess, "mean", None), getattr(preprocess, "std", None)
    if mean is None or std is None:
        return None
    return {
        "mean": list(mean)[:channels],
        "std": list(std)[:channels],
        "formula": "(x / 255 - mean) / std",
    }
