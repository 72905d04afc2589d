"""Which model a piece of text means, one rule for every command and the explorer.

A SOURCE is, in this order of precedence:

1. a run folder: a path holding ``checkpoint.pt``, or a name under the runs folder
   (``runs/lenet5``), the trained model;
2. a registered model name (``lenet5``: untrained, seeded);
3. ``torchvision:NAME`` (untrained, or its ImageNet weights);
4. ``package.module:callable``, the user's own model.

When a run folder and a registered name are spelled alike, the run wins and :func:`which`
returns a note that names both, so no command silently means another model than its neighbour.

An IMAGE (:func:`source_image`) is, for every command that reads one: ``test:N`` (test image N
of the run's own data set), ``DATASET:N`` (test image N of ``mnist``, ``fashion-mnist``,
``cifar10`` or ``digits``, converted to the model's input) or an image file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import DATASET_NAMES
from .errors import CnnlabError
from .runs import CHECKPOINT

# DATASET:N: every named data set but an image folder (which has no name of its own)
DATASET_IMAGES = tuple(name for name in DATASET_NAMES if name != "imagefolder")


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
    from .models import names_a_model

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
    """The image ``text`` names for ``source`` (a :class:`cnnlab.trained.ModelSource`): the
    uint8 ``1 x C x H x W`` batch in the model's input format, a label for titles, the true
    class when known (``test:N``, or ``DATASET:N`` of the data set the run learned), a
    file-name stem, and notes on what was converted (the aspect ratio kept by a centre crop
    unless ``squash``)."""
    import torch

    from .images import fit_resized_crop, opened

    name, sep, _ = text.partition(":")
    if text.startswith("test:"):
        test = source.test_split(data_dir)
        index = _index(text, "test")
        if not 0 <= index < len(test):
            raise CnnlabError(f"{text}: the test set has images 0..{len(test) - 1}")
        image, true = test[index]  # in memory or streamed from an image folder
        label = f"test image {index} (true: {test.classes[true]})"
        return image[None], label, true, f"test-{index}", []
    if sep and name in DATASET_IMAGES and not Path(text).exists():
        from PIL import Image

        from .data import load_dataset

        data = load_dataset(name, "test", root=data_dir)
        index = _index(text, name)
        if not 0 <= index < len(data):
            raise CnnlabError(f"{text}: the {name} test split has images 0..{len(data) - 1}")
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
    with opened(text) as picture:
        array, notes = fit_resized_crop(
            picture, source.in_channels, source.input_size, source.resize, squash
        )
    batch = torch.from_numpy(array.copy()).unsqueeze(0)
    return batch, Path(text).name, None, Path(text).stem, notes


__all__ = ["DATASET_IMAGES", "Which", "find_run", "source_image", "which"]
