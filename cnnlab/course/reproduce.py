"""``cnnlab reproduce``: the course's experiments, run again with the course's own recipes, next
to the numbers the course logged.

Each experiment is the material's model and recipe (optimizer, learning rate, batch, input
scaling, shuffling, epochs) as :class:`~cnnlab.train.TrainConfig` settings. The report is
Markdown + JSON + one PNG per experiment that overlays the material's logged curve and ours.
``--quick`` trains on small subsets for one epoch (minutes on 2 CPU cores, for CI: it checks
the pipeline, not the figures); the full mode first says how long it will take on this device.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import run_folder
from ..errors import CnnlabError, RunFolderError
from ..runs.start import resume_run, train_run
from ..train.config import TrainConfig
from ..train.setup import FitResult
from . import e2, keras_code
from .report import data_description

# The Keras recipe of E4-E6: Adam 0.001 constant (Keras' epsilon 1e-7), batch 32, x / 255, no
# augmentation, shuffled; every Conv2D and Dense starts from Keras' glorot_uniform with zero biases.
KERAS_CIFAR = {
    "init": "keras",
    "adam_eps": 1e-7,
    "dataset": "cifar10",
    "data_variant": "jpeg",
    "optimizer": "adam",
    "lr": 1e-3,
    "schedule": "none",
    "batch_size": 32,
    "epochs": 5,
    "input_scaling": "unit",
    "augment": False,
}
# The PyTorch recipe of E7/E8: Adam 0.001 constant, batch 100, ToTensor() only, NOT shuffled,
# 5 epochs = 3,000 iterations, test accuracy every 50 iterations.
TORCH_FASHION = {
    "dataset": "fashion-mnist",
    "optimizer": "adam",
    "lr": 1e-3,
    "schedule": "none",
    "batch_size": 100,
    "epochs": 5,
    "input_scaling": "unit",
    "shuffle": False,
    "eval_every": 50,
}


@dataclass
class Experiment:
    key: str
    what: str
    reference: str  # what the material reports, in words
    reference_value: float  # the test accuracy the material reports
    settings: dict[str, Any]  # the material's recipe
    quick: dict[str, Any]  # what --quick changes
    # the material's logged (train loss, train accuracy) per epoch, where it logged them
    logged: list[tuple[float, float]] = field(default_factory=list)
    logged_test: tuple[float, float] | None = None  # (test loss, test accuracy)
    note: str = ""


QUICK_CIFAR = {"epochs": 1, "train_subset": 1000, "test_subset": 500, "data_variant": "subset"}
QUICK_FASHION = {"epochs": 1, "train_subset": 5000, "test_subset": 1000}

EXPERIMENTS = [
    Experiment(
        "e1-lenet5-mnist",
        "E1 LeNet-5 (1998, tanh, average pooling, C3 table) on MNIST",
        "LeCun et al. 1998: 0.95% test error (99.05% accuracy) after 20 passes",
        0.9905,
        {
            "model": "lenet5",
            # the paper's 32x32 field: the digit's normalised background all around it
            "model_options": {"c3_table": True, "pad": "background"},
            "dataset": "mnist",
            "optimizer": "adam",
            "lr": 1e-3,
            "schedule": "cosine",
            "batch_size": 64,
            "epochs": 20,
        },
        {"epochs": 1, "train_subset": 6000, "test_subset": 1000},
        note="the paper trained with stochastic diagonal Levenberg-Marquardt (a per-weight step "
        "from a running estimate of the Hessian's diagonal) and a rate lowered by hand over 20 "
        "passes; PyTorch has no such optimizer, so cnnlab uses Adam (also a per-weight step "
        "size) with a cosine decay in place of the hand-made schedule, and a softmax output in "
        "place of the RBF units",
    ),
    Experiment(
        "e4-cifar-plain7",
        "E4 plain CIFAR-10 stack (7 conv 128, Keras)",
        "the material's log: 71.65% test accuracy after 5 epochs",
        0.7165,
        {"model": "cifar_plain7", **KERAS_CIFAR},
        QUICK_CIFAR,
        logged=[
            (1.5299, 0.4353),
            (1.0676, 0.6203),
            (0.8887, 0.6868),
            (0.7801, 0.7255),
            (0.6998, 0.7539),
        ],
        logged_test=(0.8268, 0.7165),
    ),
    Experiment(
        "e5-cifar-residual",
        "E5 residual CIFAR-10 stack (8 conv 128, one pool, Keras)",
        "the material's log: 66.30% test accuracy after 5 epochs",
        0.6630,
        {"model": "cifar_residual", **KERAS_CIFAR},
        QUICK_CIFAR,
        logged=[
            (1.6324, 0.4205),
            (1.1720, 0.5896),
            (1.0026, 0.6489),
            (0.8923, 0.6879),
            (0.8083, 0.7175),
        ],
        logged_test=(0.9831, 0.6630),
    ),
    Experiment(
        "e6-cifar-residual-pool",
        "E6 residual CIFAR-10 stack with a pool after each pair (Keras)",
        "the material's log: 75.95% test accuracy after 5 epochs",
        0.7595,
        {"model": "cifar_residual_pool", **KERAS_CIFAR},
        QUICK_CIFAR,
        logged=[
            (1.3663, 0.5045),
            (0.8867, 0.6915),
            (0.7260, 0.7456),
            (0.6218, 0.7824),
            (0.5350, 0.8134),
        ],
        logged_test=(0.7477, 0.7595),
    ),
    Experiment(
        "e7-fashion-dnn",
        "E7 Fashion-MNIST DNN 784-256-dropout-128-10 (PyTorch)",
        "the material: about 86% test accuracy after 3,000 iterations",
        0.86,
        {"model": "fashion_mlp", **TORCH_FASHION},
        QUICK_FASHION,
    ),
    Experiment(
        "e8-fashion-cnn",
        "E8 Fashion-MNIST CNN (PyTorch)",
        "the material: about 90% test accuracy after 3,000 iterations",
        0.90,
        {"model": "fashion_cnn", "model_options": {"course": True}, **TORCH_FASHION},
        QUICK_FASHION,
        note="the course's FashionCNN exactly (course=true: no activation between fc 600, fc "
        "120 and fc 10); what still differs from the course's code: cnnlab measures test "
        "accuracy in eval mode (batch norm from its running statistics, dropout off), where "
        "the course's loop never calls model.eval(), so its batch norm normalised each test "
        "batch by that batch's own statistics and its dropout stayed on while it tested",
    ),
]


KEYS = [EXPERIMENTS[0].key, *e2.KEYS] + [e.key for e in EXPERIMENTS[1:]]


def config_for(
    exp: Experiment,
    quick: bool,
    data_dir: str | None,
    progress: bool,
    train_subset: int | None = None,
) -> TrainConfig:
    """The experiment's recipe as a :class:`TrainConfig`; ``train_subset`` keeps the recipe
    but trains on N training images drawn at random with a fixed seed (for a machine too slow
    for the full run)."""
    settings = {**exp.settings, **(exp.quick if quick else {})}
    if train_subset:
        settings["train_subset"] = train_subset
    return TrainConfig(**settings, data_dir=data_dir, progress=progress)


def estimate_seconds(config: TrainConfig, train_images: int) -> float:
    """Seconds the training will take here: a few timed optimizer steps on random images of
    the data set's shape, times the steps of the run (evaluation not included)."""
    import torch

    from ..models import create_model

    channels, side = (3, 32) if config.dataset == "cifar10" else (1, 28)
    model = create_model(
        config.model, num_classes=10, in_channels=channels, input_size=side, **config.model_options
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    images = torch.randn(config.batch_size, channels, side, side)
    labels = torch.randint(0, 10, (config.batch_size,))

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    step()  # warm-up
    started, count = time.perf_counter(), 3
    for _ in range(count):
        step()
    per_step = (time.perf_counter() - started) / count
    return per_step * (train_images // config.batch_size) * config.epochs


# settings that say where and how a run was watched, not what it trained: a kept run matches
# the recipe whatever they were
NOT_THE_RECIPE = ("data_dir", "progress", "tensorboard", "device")


def kept_run(runs_root: Path, config: TrainConfig) -> Path | None:
    """The newest run folder under ``runs_root/reproduce`` trained with exactly this recipe
    (every setting of its ``config.json`` equal, but for :data:`NOT_THE_RECIPE`), or None."""
    wanted = json.loads(json.dumps(asdict(config)))
    for name in NOT_THE_RECIPE:
        wanted.pop(name, None)
    folders = (runs_root / "reproduce").glob(f"{config.model}-{config.dataset}*")
    for folder in sorted(folders, key=lambda p: p.stat().st_mtime, reverse=True):
        if not (folder / run_folder.CHECKPOINT).is_file():
            continue
        try:
            saved = run_folder.read_config(folder)
        except RunFolderError:
            continue
        # a setting newer than the run's config.json was its default then
        defaults = json.loads(json.dumps(asdict(TrainConfig())))
        if all(saved.get(k, defaults.get(k)) == v for k, v in wanted.items()):
            return folder
    return None


def _epochs_done(folder: Path) -> int:
    """The epochs a run folder's metrics.csv records (0 when it has none yet)."""
    try:
        return len(run_folder.read_metrics(folder / run_folder.METRICS))
    except (OSError, RunFolderError):
        return 0


def train_or_resume(
    config: TrainConfig, runs_root: Path, resume: bool, say=print
) -> tuple[FitResult, str]:
    """Train the recipe into a new folder; with ``resume``, continue (or, when finished, read)
    the newest kept run of the same recipe instead. Also says what it did."""
    folder = kept_run(runs_root, config) if resume else None
    if folder is None:
        return train_run(config, runs_root / "reproduce"), "trained"
    state = run_folder.load_checkpoint(folder / run_folder.CHECKPOINT)
    if int(state["epoch"]) < config.epochs:
        say(f"resuming {folder} after epoch {state['epoch']} of {config.epochs}")
        return resume_run(folder, runs_root=runs_root), f"resumed after epoch {state['epoch']}"
    say(f"{folder} already finished its {config.epochs} epochs: reading it")
    steps = (state.get("steps") or {}).get("rows", [])
    result = FitResult(list(state["history"]), state.get("confusion"), folder, steps=steps)
    return result, "read from a finished run"


def run(
    quick: bool,
    runs_root: Path,
    data_dir: str | None = None,
    only: list[str] | None = None,
    progress: bool = False,
    say=print,
    train_subset: int | None = None,
    resume: bool = False,
    keras: bool = False,
) -> list[dict[str, Any]]:
    """Train every experiment (or those in ``only``) into ``runs_root/reproduce`` with the
    material's recipe and collect one row each, with the per-epoch and per-iteration logs.

    ``resume`` continues (or reads) the newest kept run of each recipe instead of starting
    again; ``keras`` also runs the course's own Keras code for E4-E6 on the same images
    (:mod:`cnnlab.course.keras_code`), whose per-epoch log becomes the report's middle column."""
    rows = []
    by_key = {exp.key: exp for exp in EXPERIMENTS}
    for key in KEYS:  # the report's order: E1, E2, E4, ...
        if only and key not in only:
            continue
        if key in e2.KEYS:  # two trainings and a ratio: a row of its own kind
            rows.append(e2.run_e2(quick, runs_root, data_dir, say, train_subset, key))
            continue
        exp = by_key[key]
        config = config_for(exp, quick, data_dir, progress, train_subset)
        kept = kept_run(runs_root, config) if resume else None
        finished = kept is not None and _epochs_done(kept) >= config.epochs
        if not quick and not finished:
            images = config.train_subset or (50_000 if config.dataset == "cifar10" else 60_000)
            minutes = estimate_seconds(config, images) / 60
            say(f"{exp.key}: about {minutes:.0f} min of training on this device")
        started = time.perf_counter()
        result, how = train_or_resume(config, runs_root, resume, say)
        seconds = time.perf_counter() - started
        if how != "trained":  # the seconds the run itself logged, over all its sittings
            seconds = sum(row.get("train_seconds", 0.0) for row in result.history)
        row = report_row(exp, config, result, how, seconds, quick, train_subset)
        if key in keras_code.KEYS:
            row["course_code"] = course_code_column(key, config, runs_root, keras, resume, say)
            row["dead_relus"] = dead_units(key, config, result, runs_root, row["course_code"])
        rows.append(row)
    return rows


def report_row(
    exp: Experiment,
    config: TrainConfig,
    result: FitResult,
    how: str,
    seconds: float,
    quick: bool,
    train_subset: int | None,
) -> dict[str, Any]:
    """One experiment's row of the report: the material's figures beside the run's, per epoch
    and (with ``eval_every``) per iteration, the recipe, the data and the run folder."""
    last = result.history[-1]
    return {
        "key": exp.key,
        "what": exp.what,
        "reference": exp.reference,
        "reference_acc": exp.reference_value,
        "cnnlab_acc": last["test_acc"],
        "cnnlab_loss": last["test_loss"],
        "difference": last["test_acc"] - exp.reference_value,
        "seconds": seconds,
        "how": how,
        "settings": {
            **exp.settings,
            **(exp.quick if quick else {}),
            **({"train_subset": train_subset} if train_subset else {}),
        },
        "data": data_description(config),
        "epochs": [{k: row[k] for k in EPOCH_KEYS} for row in result.history],
        "steps": list(getattr(result, "steps", []) or []),
        "logged": exp.logged,
        "logged_test": exp.logged_test,
        "run": str(result.run_dir),
        "note": exp.note,
        "quick": quick,
        "train_subset": train_subset,  # the option (--quick's own cuts are in settings)
    }


def course_code_column(
    key: str, config: TrainConfig, runs_root: Path, keras: bool, resume: bool, say=print
) -> dict[str, Any]:
    """The course's Keras code run here (with ``keras``; a kept result with ``resume``), or a
    line that says how to get the column."""
    kept = keras_code.cache_path(runs_root, key, config)
    if not keras and not (resume and kept.exists()):
        return {"missing": "run with --keras for the course's own Keras code on the same images"}
    try:
        return keras_code.run_course_code(key, config, runs_root, say, reuse=resume)
    except CnnlabError as err:
        return {"missing": str(err)}


EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")


DEAD_PROBE_IMAGES = 256


def dead_units(
    key: str, config: TrainConfig, result: FitResult, runs_root: Path, code: dict[str, Any]
) -> dict[str, Any]:
    """The ReLU units that ended training dead (0 for each of the first 256 test images) in
    cnnlab's run and, where the course's Keras code finished its epochs (``code``, the
    report's middle column), in its kept model: ``{"images": n, "cnnlab": {layer: share},
    "course_code": {layer: share}}`` (or ``"course_code_missing"``: why not). Such a unit
    passes no gradient; a plain stack that loses most of a layer's units trains narrower."""
    from ..inspect.views import dead_relus
    from ..runs.load import load_run
    from ..train.pipeline import load_data

    test = load_data(config)[1]
    images = test.images[:DEAD_PROBE_IMAGES]
    trained = load_run(str(result.run_dir), runs_root)
    found: dict[str, Any] = {"images": len(images)}
    found["cnnlab"] = dead_relus(trained.model, trained.preprocess(images))
    if len(code.get("epochs", [])) != config.epochs:  # not run, or not to the end
        return found
    saved = keras_code.cache_path(runs_root, key, config).with_suffix(".keras")
    try:
        found["course_code"] = keras_code.dead_relus(saved, images)
    except (CnnlabError, OSError, ValueError) as err:  # no Keras, or no readable model
        found["course_code_missing"] = f"its kept model {saved} could not be read: {err}"
    return found
