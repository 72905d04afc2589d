"""The course's own Keras code for E4-E6, run here on the same images as cnnlab's run: the
report's middle column, between the course's log and cnnlab.

Keras 3 runs on its torch backend (``pip install 'cnnlab[keras]'``). The networks are written
as the course writes them (E4 ``Sequential``, E5/E6 the functional API with ``x = x + _x``);
training is the course's ``model.compile(optimizer='adam',
loss='sparse_categorical_crossentropy', metrics=['accuracy'])`` and ``model.fit(x_train,
y_train, epochs=5)`` with Keras' own defaults (batch 32, shuffle, Adam 0.001 / eps 1e-7,
glorot_uniform kernels, zero biases). The test split is passed as ``validation_data`` so each
epoch's test figures are logged; that does not change the training.

A finished result is kept as JSON in the runs folder and reused by a later report with the same
experiment, images and seed, so a full-length run is paid for once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .. import run_folder
from ..errors import CnnlabError

KEYS = ("e4-cifar-plain7", "e5-cifar-residual", "e6-cifar-residual-pool")
HOW_TO_GET = "pip install 'cnnlab[keras]' (Keras 3; it runs on torch, already installed)"


def keras_module():
    """Keras on its torch backend, or a :class:`CnnlabError` that says how to get it."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        raise CnnlabError(f"the course's Keras code needs Keras: {HOW_TO_GET}") from None
    if keras.backend.backend() != "torch":
        raise CnnlabError(
            f"Keras runs on its {keras.backend.backend()!r} backend here: set KERAS_BACKEND=torch "
            "before Python starts so the course's code runs on the same torch as cnnlab"
        )
    return keras


def course_e4(keras):
    """E4 as the course writes it: 7 Conv2D(128, 3x3, relu) without padding, one 2x2 pool."""
    layers = keras.layers
    model = keras.models.Sequential()
    model.add(keras.Input(shape=(32, 32, 3)))
    model.add(layers.Conv2D(128, (3, 3), activation="relu"))
    for _ in range(6):
        model.add(layers.Conv2D(128, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dense(128, activation="relu"))
    model.add(layers.Dense(128, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    return model


def course_residual(keras, pool_each: bool):
    """E5 (``pool_each=False``: one pool at the end) and E6 (a pool after each residual pair),
    as the course writes them with the functional API."""
    layers = keras.layers
    inputs = keras.Input(shape=(32, 32, 3))
    x = inputs
    _x = layers.Conv2D(128, 3, activation="relu", padding="same")(x)
    _x = layers.Conv2D(128, 3, activation="relu", padding="same")(_x)
    x = _x
    for _ in range(3):
        _x = layers.Conv2D(128, 3, activation="relu", padding="same")(x)
        _x = layers.Conv2D(128, 3, activation="relu", padding="same")(_x)
        x = x + _x
        if pool_each:
            x = layers.MaxPooling2D(2)(x)
    if not pool_each:
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128)(x)
    x = layers.Dense(128)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def course_model(key: str, keras):
    """The course's Keras network of experiment ``key`` (one of :data:`KEYS`)."""
    builders = {
        "e4-cifar-plain7": course_e4,
        "e5-cifar-residual": lambda k: course_residual(k, pool_each=False),
        "e6-cifar-residual-pool": lambda k: course_residual(k, pool_each=True),
    }
    if key not in builders:
        raise CnnlabError(f"{key!r}: the course's Keras code exists for {', '.join(KEYS)}")
    return builders[key](keras)


def _arrays(dataset) -> tuple[Any, Any]:
    """cnnlab's uint8 N x C x H x W images as the course's x / 255 in N x H x W x C float32."""
    images = dataset.images.permute(0, 2, 3, 1).numpy().astype("float32") / 255.0
    return images, dataset.labels.numpy()


def cache_path(runs_root: Path, key: str, config) -> Path:
    images = config.train_subset or "all"
    return runs_root / "reproduce" / "keras" / f"{key}-{images}-seed{config.seed}.json"


def _epoch_rows(history: dict[str, list[float]], first: int) -> list[dict[str, float]]:
    return [
        {
            "epoch": first + i + 1,
            "train_loss": float(history["loss"][i]),
            "train_acc": float(history["accuracy"][i]),
            "test_loss": float(history["val_loss"][i]),
            "test_acc": float(history["val_accuracy"][i]),
        }
        for i in range(len(history["loss"]))
    ]


def _model_to_train(key: str, keras, seed: int, kept: dict | None, saved: Path, say):
    """The kept model after its last epoch (weights and Adam's moments, as they were), or the
    course's network compiled as the course compiles it; and the kept log (None: new)."""
    if kept and kept["epochs"] and saved.exists():
        keras.utils.set_random_seed(seed + len(kept["epochs"]))
        say(f"{key}: the course's Keras code, resumed after epoch {len(kept['epochs'])}")
        return keras.models.load_model(saved), kept
    keras.utils.set_random_seed(seed)
    model = course_model(key, keras)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, None


def run_course_code(
    key: str, config, runs_root: Path, say=print, reuse: bool = True
) -> dict[str, Any]:
    """Train the course's Keras code for ``key`` on the images ``config`` names (cnnlab's own)
    and return its per-epoch log. After every epoch the model (``.keras``) and the log so far
    are written atomically, so with ``reuse`` a killed run goes on from its last epoch and a
    finished one is read instead of trained again."""
    path = cache_path(runs_root, key, config)
    kept = json.loads(path.read_text()) if reuse and path.exists() else None
    if kept and len(kept["epochs"]) > config.epochs:  # a longer run is not this one
        kept = None
    if kept and kept["epochs_wanted"] == config.epochs and len(kept["epochs"]) == config.epochs:
        say(f"{key}: the course's Keras code, kept from {path}")
        return kept
    keras = keras_module()
    import torch

    from ..train.pipeline import load_data

    train, test = load_data(config)
    x_train, y_train = _arrays(train)
    x_test, y_test = _arrays(test)
    saved = path.with_suffix(".keras")
    model, kept = _model_to_train(key, keras, config.seed, kept, saved, say)
    done, seconds = (len(kept["epochs"]), kept["seconds"]) if kept else (0, 0.0)
    result = {
        "key": key,
        "keras": keras.__version__,
        "torch": torch.__version__,
        "train_images": len(x_train),
        "test_images": len(x_test),
        "seed": config.seed,
        "epochs_wanted": config.epochs,
        "parameters": int(model.count_params()),
        "seconds": seconds,
        "epochs": list(kept["epochs"]) if kept else [],
        "resumed_after": ([*kept.get("resumed_after", []), done] if kept else []),
    }
    say(
        f"{key}: the course's Keras code (Keras {keras.__version__}, torch backend) on "
        f"{len(x_train):,} images, epochs {done + 1}-{config.epochs}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    for epoch in range(done, config.epochs):  # one fit per epoch: a checkpoint after each
        started = time.perf_counter()
        history = model.fit(
            x_train,
            y_train,
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=(x_test, y_test),
            verbose=2 if config.progress else 0,
        ).history
        result["seconds"] += time.perf_counter() - started
        result["epochs"] += _epoch_rows(history, epoch)
        temporary = saved.with_name(f".{saved.stem}.tmp.keras")
        model.save(temporary)
        os.replace(temporary, saved)
        run_folder.write_text(path, json.dumps(result, indent=2) + "\n")
    return result


def dead_relus(saved: Path, images, batch_size: int = 64) -> dict[str, float]:
    """For each layer of a kept Keras model with a ReLU activation (input to output), the share
    of its units (channels of a convolution, neurons of a dense layer) that output 0 for every
    one of ``images`` (cnnlab's uint8 ``N x C x H x W``, read as the course reads them: x / 255):
    the Keras side of :func:`cnnlab.inspect.dead_relus`."""
    import numpy as np

    keras = keras_module()
    model = keras.models.load_model(saved)
    relu = keras.activations.relu
    layers = [layer for layer in model.layers if getattr(layer, "activation", None) is relu]
    if not layers:
        raise CnnlabError(f"{saved}: no layer with a ReLU activation to count dead units of")
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    x = images.permute(0, 2, 3, 1).numpy().astype("float32") / 255.0
    peaks: list[Any] = [None] * len(layers)
    for start in range(0, len(x), batch_size):
        outputs = probe.predict(x[start : start + batch_size], verbose=0)
        if len(layers) == 1:  # one output comes back bare, not in a list
            outputs = [outputs]
        for i, out in enumerate(outputs):
            out = np.asarray(out)
            peak = out.reshape(-1, out.shape[-1]).max(0)
            peaks[i] = peak if peaks[i] is None else np.maximum(peaks[i], peak)
    return {layer.name: int((peak <= 0).sum()) / len(peak) for layer, peak in zip(layers, peaks)}
