"""``cnnlab train``, ``eval`` and ``predict``: training a run and using it."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from ._options import (
    EveryDefaultFormatter,
    Parser,
    add_data_options,
    add_model_option,
    add_run_options,
)


def add_train(sub: argparse._SubParsersAction) -> None:
    typed = Parser(prog="cnnlab train", add_help=False)
    train_arguments(typed, typed_only=True)  # the same options, every default SUPPRESS
    p = sub.add_parser(
        "train",
        help="train a model on a data set into runs/<name>/",
        description="Train a registered model. With no arguments: LeNet-5 on the 8x8 digits "
        "(no download). Settings come from TrainConfig's defaults, then --recipe, then --config, "
        "then the flags typed here, each over the one before. Works unchanged under "
        "`torchrun --nproc_per_node=N`.",
        formatter_class=EveryDefaultFormatter,
        typed_options=typed,
    )
    train_arguments(p)
    p.set_defaults(handler=_train)


def train_arguments(p: argparse.ArgumentParser, typed_only: bool = False) -> None:
    """The options of ``cnnlab train``, in groups; with ``typed_only`` every default is
    ``SUPPRESS``, so that parsing with it tells the options typed from those defaulted."""
    from ..data.batches import INPUT_SCALINGS
    from ..data.datasets import CIFAR_VARIANTS, DATASET_NAMES
    from ..models.init import INIT_SCHEMES
    from ..train.config import (
        AMP_MODES,
        AUGMENT_STYLES,
        KEEP_CHOICES,
        OPTIMIZERS,
        SCHEDULES,
        TrainConfig,
    )
    from ..train.recipes import recipe_names

    d = TrainConfig()
    init_help = "conv/linear weights: torch, keras (glorot-uniform, zero bias), normal-0.01"

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if typed_only else value

    p.add_argument(
        "--recipe",
        default=default(None),
        metavar="NAME",
        help="start from a named preset of these settings; `--recipe list` describes them: "
        f"{', '.join(recipe_names())}",
    )
    p.add_argument(
        "--config",
        default=default(None),
        metavar="FILE",
        help="settings from a JSON or YAML file of TrainConfig fields, e.g. a run's "
        "config.json to rerun it (over --recipe's; flags typed here win)",
    )
    model = p.add_argument_group("model")
    model.add_argument("--model", default=default(d.model), help="a name from `cnnlab models`")
    add_model_option(
        model,
        "a builder option, e.g. -O modern=true for lenet5 (`cnnlab models --options` lists "
        "them), or -O binary=true with two --classes",
        default(None),
    )
    model.add_argument("--init", default=default(d.init), choices=INIT_SCHEMES, help=init_help)
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default=default(d.dataset),
        choices=DATASET_NAMES,
        help="what to train on (`cnnlab data` shows where each is found)",
    )
    add_data_options(data, "data folder (default: $CNNLAB_DATA, else the cache)", default(None))
    data.add_argument(
        "--data-variant",
        default=default(None),
        choices=CIFAR_VARIANTS,
        help="cifar10 source (default: the first found of official, jpeg, subset)",
    )
    data.add_argument(
        "--download",
        action="store_true",
        default=default(False),
        help="download missing data (torchvision)",
    )
    data.add_argument(
        "--image-channels",
        type=int,
        choices=(1, 3),
        default=default(None),
        help="convert the images to 1 (gray) or 3 (RGB) channels; the multiply-adds this saves "
        "or costs are printed before training (default: the data set's)",
    )
    data.add_argument(
        "--image-size",
        type=int,
        default=default(None),
        metavar="N",
        help="resize the images to N x N (bilinear; an image folder of mixed sizes: each "
        "image's shorter side to N, then the centre N x N); the model is built for that size "
        "(default: the data set's)",
    )
    data.add_argument(
        "--stream",
        action="store_true",
        default=default(False),
        help="imagefolder: read the images from disk batch by batch (DataLoader workers) instead "
        "of holding them in memory; chosen by itself when they would not fit",
    )
    data.add_argument(
        "--train-subset",
        type=int,
        default=default(None),
        metavar="N",
        help="train on N random images (default: all)",
    )
    data.add_argument(
        "--test-subset",
        type=int,
        default=default(None),
        metavar="N",
        help="test on N random images (default: all)",
    )
    data.add_argument(
        "--val-split",
        type=float,
        default=default(d.val_split),
        metavar="FRACTION",
        help="hold out this fraction of the training images for validation (stratified, "
        "seeded by --seed): val_loss and val_acc each epoch; 0: none",
    )
    data.add_argument(
        "--classes",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        default=default(None),
        metavar="A,B,...",
        help="keep only these classes (names or numbers), relabelled 0, 1, ... in this order, "
        "e.g. --classes cat,dog; with two, -O binary=true trains a one-logit sigmoid head "
        "(default: all)",
    )
    data.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=default(d.augment),
        help="random crops and flips of the training images",
    )
    data.add_argument(
        "--augment-style",
        default=default(d.augment_style),
        choices=AUGMENT_STYLES,
        help="with --augment: standard (pad-and-crop + flip) or alexnet (scale up by 256/224, "
        "random crop back, flip, fancy PCA colour on RGB data, as AlexNet did)",
    )
    data.add_argument(
        "--input-scaling",
        default=default(d.input_scaling),
        choices=INPUT_SCALINGS,
        help="pixels as none: 0..255, unit: x/255 (Keras, ToTensor()), standard: per-channel "
        "mean/std of the training images",
    )
    data.add_argument(
        "--shuffle",
        action=argparse.BooleanOptionalAction,
        default=default(d.shuffle),
        help="a new training order every epoch (--no-shuffle: the stored order, as a DataLoader "
        "without shuffle=True)",
    )
    data.add_argument(
        "--test-flip",
        action=argparse.BooleanOptionalAction,
        default=default(d.test_flip),
        help="test-time augmentation: score each test image by the mean logits of it and its "
        "mirror image (photos; refused for digits)",
    )
    optimisation = p.add_argument_group("optimisation")
    optimisation.add_argument(
        "--epochs",
        type=int,
        default=default(d.epochs),
        help="total epochs (with --resume: raise the run's total)",
    )
    optimisation.add_argument(
        "--batch-size", type=int, default=default(d.batch_size), help="global, over all ranks"
    )
    optimisation.add_argument(
        "--optimizer", default=default(d.optimizer), choices=OPTIMIZERS, help="the update rule"
    )
    optimisation.add_argument("--lr", type=float, default=default(d.lr), help="peak learning rate")
    optimisation.add_argument(
        "--momentum", type=float, default=default(d.momentum), help="SGD momentum"
    )
    optimisation.add_argument(
        "--nesterov", action="store_true", default=default(False), help="Nesterov momentum (SGD)"
    )
    optimisation.add_argument(
        "--weight-decay", type=float, default=default(d.weight_decay), help="L2 penalty"
    )
    eps_help = "Adam's epsilon (PyTorch: 1e-8; Keras: 1e-7)"
    optimisation.add_argument("--adam-eps", type=float, default=default(d.adam_eps), help=eps_help)
    optimisation.add_argument(
        "--label-smoothing",
        type=float,
        default=default(d.label_smoothing),
        help="share of the target spread over all classes",
    )
    optimisation.add_argument(
        "--lookahead",
        action=argparse.BooleanOptionalAction,
        default=default(d.lookahead),
        help="airbench's lookahead: every 5 steps pull the weights towards a slow copy, more "
        "so as the run ends (calmer final weights)",
    )
    optimisation.add_argument(
        "--seed", type=int, default=default(d.seed), help="weights, order, augmentation, split"
    )
    schedule = p.add_argument_group("schedule")
    schedule.add_argument(
        "--schedule", default=default(d.schedule), choices=SCHEDULES, help="per-step LR shape"
    )
    schedule.add_argument(
        "--warmup-epochs",
        type=float,
        default=default(d.warmup_epochs),
        help="linear warm-up from 0, in epochs",
    )
    schedule.add_argument(
        "--step-epochs",
        type=int,
        default=default(d.step_epochs),
        help="--schedule step: epochs between steps",
    )
    schedule.add_argument(
        "--step-gamma",
        type=float,
        default=default(d.step_gamma),
        help="--schedule step: LR factor at each step",
    )
    output = p.add_argument_group("output")
    output.add_argument(
        "--name", default=default(None), help="run folder name (default: <model>-<dataset>[-N])"
    )
    add_run_options(output, "folder that holds run folders", default("runs"))
    output.add_argument(
        "--overwrite",
        action="store_true",
        default=default(False),
        help="replace an existing --name folder",
    )
    output.add_argument(
        "--resume",
        metavar="RUN",
        default=default(None),
        help="continue a killed run with its saved config (only --epochs and --tensorboard may "
        "change)",
    )
    output.add_argument(
        "--keep",
        default=default(d.keep),
        choices=KEEP_CHOICES,
        help="best: also keep best.pt, the epoch of the best validation accuracy (needs "
        "--val-split), which eval, predict and show then use",
    )
    output.add_argument(
        "--eval-every",
        type=int,
        default=default(d.eval_every),
        metavar="N",
        help="also test every N optimizer steps (steps.csv in the run folder)",
    )
    output.add_argument(
        "--tensorboard",
        action="store_true",
        default=default(False),
        help="write TensorBoard event files into RUN/tensorboard (view: tensorboard --logdir runs)",
    )
    output.add_argument(
        "--no-progress", action="store_true", default=default(False), help="hide the progress bar"
    )
    hardware = p.add_argument_group("hardware")
    hardware.add_argument("--device", default=default(d.device), help="auto, cpu, cuda or cuda:N")
    hardware.add_argument(
        "--amp", default=default(d.amp), choices=AMP_MODES, help="autocast precision"
    )
    for flag, text in (
        ("--channels-last", "NHWC memory order"),
        ("--probe", "time bf16/fp32 and channels_last or not for a second; train the fastest"),
    ):
        hardware.add_argument(flag, action="store_true", default=default(False), help=text)


# command-line destinations that name a TrainConfig field differently
TYPED_FIELDS = {"model_option": "model_options", "no_progress": "progress"}


def _train(args: argparse.Namespace) -> int:
    from ..experiment import resume_run, train_run
    from ..train.config import TrainConfig
    from ..train.distributed import current_distributed, init_distributed
    from ..train.recipes import recipe_lines

    given = getattr(args, "given", set())
    if args.recipe == "list":
        print("\n".join(recipe_lines()))
        return 0
    for option in ("recipe", "config"):
        if args.resume and getattr(args, option):
            raise CnnlabError(
                f"--{option} {getattr(args, option)} with --resume {args.resume}: a resumed run "
                f"keeps its saved settings; drop --{option}"
            )
    if args.resume:
        init_distributed(args.device)
        epochs = args.epochs if "epochs" in given else None
        result = resume_run(args.resume, epochs, Path(args.runs_dir), args.tensorboard)
    else:
        try:
            config = TrainConfig(**train_settings(args, given))  # checked here, on every rank
        except CnnlabError as err:
            if not args.config:
                raise
            raise CnnlabError(f"{err} (settings: --config {args.config}, then flags)") from None
        if config.image_channels is not None and current_distributed().is_main:
            from ..inspect.channel_cost import training_cost_lines

            print("\n".join(training_cost_lines(config)))
        init_distributed(config.device)
        result = train_run(
            config, Path(args.runs_dir), args.name, args.overwrite, download=args.download
        )
    if current_distributed().is_main:
        print(f"test accuracy: {result.test_accuracy:.2%}")
        if result.run_dir is not None:
            print(f"run folder: {result.run_dir}")
    return 0


def train_settings(args: argparse.Namespace, given: set[str]) -> dict[str, Any]:
    """The TrainConfig settings of a ``cnnlab train`` command: TrainConfig's defaults, then
    the ``--recipe``'s, then the ``--config`` file's, then the options typed (``given``), each
    over the one before (``-O`` options merge key by key)."""
    from ..train.config import TrainConfig
    from ..train.recipes import layered_settings

    names = {f.name for f in fields(TrainConfig)}
    typed = {TYPED_FIELDS.get(k, k): getattr(args, k) for k in given}
    typed = {k: v for k, v in typed.items() if k in names}
    if "model_options" in typed:
        typed["model_options"] = dict(typed["model_options"])
    if "progress" in typed:
        typed["progress"] = not typed["progress"]
    return layered_settings(typed, args.config, args.recipe)
