"""Which model a piece of text means, one rule for every command and the explorer.

A SOURCE is, in this order of precedence:

1. a run folder: a path holding ``checkpoint.pt``, or a name under the runs folder
   (``runs/lenet5``), the trained model;
2. a registered model name (``lenet5``: untrained, seeded);
3. ``torchvision:NAME`` (untrained, or its ImageNet weights);
4. ``package.module:callable``, the user's own model.

:func:`load_source` loads what the text means as a :class:`ModelSource` (the model with what it
needs to read images). When a run folder and a registered name are spelled alike, the run wins
and :func:`which` returns a note that names both, so no command silently means another model
than its neighbour.

An IMAGE (:func:`source_image`) is, for every command that reads one: ``test:N`` (test image N
of the run's own data set), ``DATASET:N`` (test image N of ``mnist``, ``fashion-mnist``,
``cifar10`` or ``digits``, converted to the model's input) or an image file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import run_folder
from ..data import ImageDataset, Preprocess, named_test_image
from ..errors import CnnlabError, first_line
from ..model_interface import declared_input
from ..run_folder import CHECKPOINT
from .load import TrainedRun, load_run, read_image


def find_run(text: str, runs_root: Path = Path("runs")) -> Path | None:
    """The run folder ``text`` names (itself, or ``runs_root / text``), if it holds a
    checkpoint."""
    for path in (Path(text), runs_root / text):
        if (path / CHECKPOINT).is_file():
            return path
    return None


@dataclass(frozen=True)
class Which:
    """What a SOURCE means: a run folder (``run``) or a model name (``run`` is None); ``note``
    says when the text also named the other kind."""

    text: str
    run: Path | None
    note: str | None = None

    @property
    def is_run(self) -> bool:
        return self.run is not None


def which(text: str, runs_root: Path = Path("runs")) -> Which:
    """Apply the precedence rule to ``text`` (see the module's docstring)."""
    from ..models import names_a_model

    run = find_run(text, runs_root)
    if run is None:
        return Which(text, None)
    note = None
    if names_a_model(text):
        note = (
            f"{text!r} is both the run folder {run} and a model name; using the trained run "
            f"(for the untrained {text}, pass --runs-dir to a folder without {text}/)"
        )
    return Which(text, run, note)


def _index(text: str, prefix: str) -> int:
    try:
        return int(text[len(prefix) + 1 :])
    except ValueError:
        raise CnnlabError(
            f"{text!r}: expected {prefix}:N with a number N, e.g. {prefix}:0"
        ) from None


def source_image(
    source: Any, text: str, data_dir: str | os.PathLike[str] | None = None, squash: bool = False
) -> tuple[Any, str, int | None, str, list[str]]:
    """The image ``text`` names for ``source`` (a :class:`ModelSource`): the
    uint8 ``1 x C x H x W`` batch in the model's input format, a label for titles, the true
    class when known (``test:N``, or ``DATASET:N`` of the data set the run learned), a
    file-name stem, and notes on what was converted (the aspect ratio kept by a centre crop
    unless ``squash``)."""
    import torch

    from ..images import fit_resized_crop

    if text.startswith("test:"):
        test = source.test_split(data_dir)
        index = _index(text, "test")
        if not 0 <= index < len(test):
            raise CnnlabError(f"{text}: the test set has images 0..{len(test) - 1}")
        image, true = test[index]  # in memory or streamed from an image folder
        label = f"test image {index} (true: {test.classes[true]})"
        return image[None], label, true, f"test-{index}", []
    found = named_test_image(text, data_dir)
    if found is not None:
        from PIL import Image

        data, index = found
        name = data.name
        pixels = data.images[index].permute(1, 2, 0).numpy()
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        array, notes = fit_resized_crop(
            picture, source.in_channels, source.input_size, source.resize, squash
        )
        label_index = int(data.labels[index])
        run = getattr(source, "run", None)
        same = run is not None and run.config.dataset == name and source.classes == data.classes
        true = label_index if same else None
        label = f"{name} test image {index} (true: {data.classes[label_index]})"
        batch = torch.from_numpy(array.copy()).unsqueeze(0)
        return batch, label, true, f"{name}-{index}", notes
    batch, notes = read_image(text, source.in_channels, source.input_size, source.resize, squash)
    return batch, Path(text).name, None, Path(text).stem, notes


def resolve_model_or_run(
    text: str,
    input_shape: str | None = None,
    num_classes: int | None = None,
    options: dict[str, Any] | None = None,
    runs_root: Path = Path("runs"),
) -> tuple[nn.Module, str, str | None, str | None]:
    """(model, label, input shape, the input the model was made for) from what
    :func:`cnnlab.models.resolve_model` takes, or else a run folder (the trained model)."""
    from ..inspect.shapes import parse_shape
    from ..models import check_num_classes, check_run_input, names_a_model, resolve_model

    check_num_classes(num_classes)
    shape = parse_shape(input_shape, "--input") if input_shape else None
    meant = which(text, runs_root)
    if not meant.is_run and names_a_model(text):
        found = resolve_model(text, shape, num_classes, options)
        return found.model, found.label, input_shape or found.made_for, found.made_for
    trained = load_run(meant.run or text, runs_root)
    label = f"{trained.run_dir} ({trained.spec['name']}, {len(trained.classes)} classes)"
    if meant.note:
        label += f"; note: {meant.note}"
    made_for = check_run_input(
        text,
        input_shape,
        shape,
        num_classes,
        trained.in_channels,
        trained.input_size,
        len(trained.classes),
    )
    return trained.model, label, input_shape or made_for, made_for


@dataclass
class ModelSource:
    """Any model to look inside and run on images, with what it needs to read them: a run's
    trained model (``run`` set), or an untrained registered model, a torchvision model (its
    ImageNet weights on request) or a user's ``module:callable``, see :func:`load_source`."""

    model: nn.Module
    preprocess: Preprocess
    classes: list[str]
    in_channels: int
    input_size: int
    label: str
    run: TrainedRun | None = None
    notes: list[str] | None = None
    resize: int | None = None  # shorter side before the central crop (ImageNet models: 256)

    @property
    def run_dir(self) -> Path | None:
        return self.run.run_dir if self.run else None

    def test_split(self, data_dir: str | None = None) -> ImageDataset:
        if self.run is None:
            raise CnnlabError(
                f"test:N: {self.label} is not a cnnlab run and has no test set; give an image "
                "file (PNG/JPEG) instead"
            )
        return self.run.test_split(data_dir)


def load_source(
    text: str,
    runs_root: Path = Path("runs"),
    seed: int = 0,
    weights: bool = False,
    input_shape: str | None = None,
) -> ModelSource:
    """The model ``text`` names: a run folder (or its name under ``runs_root``), a registered
    model name (untrained, its random weights drawn with ``seed``), ``torchvision:NAME``
    (untrained, or torchvision's ImageNet weights with ``weights``: from the torch cache, else
    downloaded) or ``package.module:callable``. ``input_shape`` (``"3x64x64"``) overrides the
    input a non-run model is fed. Preprocessing: a run's own statistics; torchvision models
    their weights' ImageNet mean/std, resize (256) and central crop (224); registered and user
    models mean 0.5 and std 0.5 per channel (a random network has no statistics of its own)."""
    from ..inspect.shapes import parse_shape
    from ..models import names_a_model

    shape = parse_shape(input_shape, "--input") if input_shape else None
    if shape is not None and (len(shape) != 3 or shape[1] != shape[2]):
        raise CnnlabError(
            f"--input {input_shape}: expected a square image shape C x S x S, e.g. 3x224x224"
        )
    meant = which(text, runs_root)
    if meant.is_run or not names_a_model(text):
        return _run_source(meant, runs_root, weights, shape, input_shape)
    return _model_source(text, seed, weights, shape, input_shape)


def _run_source(meant, runs_root: Path, weights: bool, shape, input_shape) -> ModelSource:
    """A run folder's trained model, with its own preprocessing and test split."""
    trained = load_run(meant.run or meant.text, runs_root)
    made_for = (trained.in_channels, trained.input_size, trained.input_size)
    if weights or (shape and shape != made_for):
        option = "--weights" if weights else f"--input {input_shape}"
        raise CnnlabError(
            f"{option}: run {trained.run_dir} has its trained weights and takes "
            f"{'x'.join(map(str, made_for))} images; leave {option.split()[0]} out"
        )
    label = f"run {trained.run_dir.name} ({trained.spec['name']})"
    notes = run_folder.kept_note(trained.run_dir, trained.epoch)  # best.pt: say so
    notes = [meant.note, *(notes or [])] if meant.note else notes
    return ModelSource(
        trained.model,
        trained.preprocess,
        trained.classes,
        *made_for[:2],
        label,
        trained,
        notes,
        trained.resize,
    )


def _model_source(text: str, seed: int, weights: bool, shape, input_shape) -> ModelSource:
    """A registered, torchvision or user model: untrained (seeded) or with ImageNet weights."""
    from ..models import resolve_model
    from ..models.tv_models import imagenet_input, pretrained_model, weights_file

    tv_name = text[len("torchvision:") :] if text.startswith("torchvision:") else None
    if weights and tv_name is None:
        raise CnnlabError(
            f"--weights: {text} has no published weights in cnnlab; ImageNet weights come with "
            "torchvision:NAME, e.g. torchvision:resnet18 --weights (or leave --weights out)"
        )
    notes, made_for = [], shape or (3, 224, 224)
    if tv_name is not None:
        import torchvision

        if tv_name not in torchvision.models.list_models():
            resolve_model(text)  # says so, with where to look
        imagenet = imagenet_input(tv_name)  # refuses a video or detection model
        if shape and shape[0] != 3:
            raise CnnlabError(
                f"--input {input_shape}: {text} takes 3-channel images, e.g. 3x224x224"
            )
    if weights:
        model = pretrained_model(tv_name, "leave --weights out for an untrained model")
        label = f"{text} (ImageNet weights {imagenet.weights.name})"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            user = shape or ((3, 224, 224) if ":" in text and tv_name is None else None)
            found = resolve_model(text, user, materialize=True)
        model, label = found.model, f"{text} (untrained, seed {seed})"
        notes.append(f"{text} is untrained: its weights are random (seed {seed}, --seed)")
        made_for = shape or user or tuple(map(int, str(found.made_for).split("x")))
    mean, std, channels, size, resize = _input_of(model, made_for, shape)
    model = model.eval()
    classes = [str(i) for i in range(_output_count(model, channels, size))]
    if len(classes) == 1000:
        classes = list(weights_file(tv_name or "resnet18")[0].meta["categories"])
    notes.append(f"images are scaled to [0, 1], then normalized with mean {mean} and std {std}")
    return ModelSource(
        model, Preprocess(mean, std), classes, channels, size, label, None, notes, resize
    )


def _input_of(model: nn.Module, made_for: tuple[int, ...], shape) -> tuple:
    """mean, std, channels, size and resize of the images ``model`` is shown: what the model
    declares (``cnnlab_input``; a ``--input`` size scales its resize), else mean and std 0.5
    per channel at the size it was made for (a random network has no statistics of its own)."""
    declared = declared_input(model)
    if declared is None:
        channels, size = made_for[0], made_for[1]
        return [0.5] * channels, [0.5] * channels, channels, size, None
    size = shape[1] if shape else declared["size"]
    resize = round(size * declared["resize"] / declared["size"])  # 256 for 224, as trained
    return declared["mean"], declared["std"], len(declared["mean"]), size, resize


@torch.no_grad()
def _output_count(model: nn.Module, channels: int, size: int) -> int:
    """How many classes the model scores: its last fully connected layer's outputs, else what
    one forward pass of a blank image gives."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return int(linears[-1].out_features)
    try:
        out = model(torch.zeros(1, channels, size, size))
    except Exception as error:  # the user's own model: its first line, not a traceback
        first = first_line(error, limit=160)
        raise CnnlabError(
            f"the model does not take a 1x{channels}x{size}x{size} batch ({type(error).__name__}: "
            f"{first}); give the input it takes with --input, e.g. --input 1x28x28"
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise CnnlabError(
            f"the model gives {type(out).__name__} {tuple(getattr(out, 'shape', ()))}, not "
            "class scores (batch x classes); show and predict need a classifier"
        )
    return int(out.shape[1])


__all__ = [
    "ModelSource",
    "Which",
    "find_run",
    "load_source",
    "resolve_model_or_run",
    "source_image",
    "which",
]
