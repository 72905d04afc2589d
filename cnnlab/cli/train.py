"""``cnnlab train``, ``eval``, ``predict``, ``models`` and ``data``: training a run and using it."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from ..errors import CnnlabError
from ._options import (
    SOURCE_HELP,
    DefaultsFormatter,
    add_data_options,
    add_run_options,
    add_source_options,
    load_any,
    option_value,
)


def add_train(sub: argparse._SubParsersAction) -> None:
    from ..data.datasets import CIFAR_VARIANTS, DATASET_NAMES
    from ..recipes import recipe_names
    from ..train import (
        AMP_MODES,
        AUGMENT_STYLES,
        INPUT_SCALINGS,
        OPTIMIZERS,
        SCHEDULES,
        TrainConfig,
    )

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a model on a data set into runs/<name>/",
        description="Train a registered model. With no arguments: LeNet-5 on scikit-learn's "
        "8x8 digits (no download). Works unchanged under `torchrun --nproc_per_node=N`.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("--model", default=d.model, help="a name from `cnnlab models`")
    p.add_argument(
        "--recipe",
        default=None,
        metavar="NAME",
        help="start from a named preset of these settings (flags given beside it win); "
        f"`--recipe list` describes them: {', '.join(recipe_names())}",
    )
    p.add_argument(
        "-O",
        "--model-option",
        action="append",
        type=option_value,
        default=[],
        metavar="KEY=VALUE",
        help="a builder option, e.g. -O modern=true for lenet5 (`cnnlab models --options` "
        "lists them), or -O binary=true with two --classes",
    )
    p.add_argument("--dataset", default=d.dataset, choices=DATASET_NAMES)
    add_data_options(p, "data folder (else $CNNLAB_DATA, else cache)")
    p.add_argument("--data-variant", default=None, choices=CIFAR_VARIANTS, help="cifar10 source")
    p.add_argument(
        "--image-channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="convert the images to 1 (gray) or 3 (RGB) channels; the multiply-adds this saves "
        "or costs are printed before training",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="N",
        help="resize the images to N x N (bilinear); the model is built for that size",
    )
    p.add_argument("--download", action="store_true", help="download missing data (torchvision)")
    p.add_argument("--train-subset", type=int, default=None, help="train on N random images")
    p.add_argument("--test-subset", type=int, default=None, help="test on N random images")
    p.add_argument(
        "--classes",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        default=None,
        metavar="A,B,...",
        help="keep only these classes (names or numbers), relabelled 0, 1, ... in this order, "
        "e.g. --classes cat,dog; with two, -O binary=true trains a one-logit sigmoid head",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=argparse.SUPPRESS,
        help=f"total epochs (default: {d.epochs}; with --resume: raise the run's total)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global, over all ranks")
    p.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES, help="per-step LR shape")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--step-epochs", type=int, default=d.step_epochs)
    p.add_argument("--step-gamma", type=float, default=d.step_gamma)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument(
        "--test-flip",
        action=argparse.BooleanOptionalAction,
        default=d.test_flip,
        help="test-time augmentation: score each test image by the mean logits of it and its "
        "mirror image (photos; refused for digits)",
    )
    p.add_argument(
        "--lookahead",
        action=argparse.BooleanOptionalAction,
        default=d.lookahead,
        help="airbench's lookahead: every 5 steps pull the weights towards a slow copy, more "
        "so as the run ends (calmer final weights)",
    )
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment)
    p.add_argument(
        "--augment-style",
        default=d.augment_style,
        choices=AUGMENT_STYLES,
        help="with --augment: standard (pad-and-crop + flip) or alexnet (scale up by 256/224, "
        "random crop back, flip, fancy PCA colour on RGB data, as AlexNet did)",
    )
    p.add_argument(
        "--input-scaling",
        default=d.input_scaling,
        choices=INPUT_SCALINGS,
        help="pixels as none: 0..255, unit: x/255 (Keras, ToTensor()), standard: per-channel "
        "mean/std of the training images",
    )
    p.add_argument(
        "--shuffle",
        action=argparse.BooleanOptionalAction,
        default=d.shuffle,
        help="a new training order every epoch (--no-shuffle: the stored order, as a DataLoader "
        "without shuffle=True)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        metavar="N",
        help="also test every N optimizer steps (steps.csv in the run folder)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default=d.amp, choices=AMP_MODES, help="autocast precision")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory order")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="write TensorBoard event files into RUN/tensorboard (view: tensorboard --logdir runs)",
    )
    p.add_argument("--name", default=None, help="run folder name (default <model>-<dataset>[-N])")
    add_run_options(p, "folder that holds run folders")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --name folder")
    p.add_argument(
        "--resume",
        metavar="RUN",
        default=None,
        help="continue a killed run with its saved config (only --epochs and --tensorboard may "
        "change)",
    )
    p.set_defaults(handler=_train)
    _remember_given(p)


def _remember_given(parser: argparse.ArgumentParser) -> None:
    """After parsing, ``args.given`` holds the destinations of the options typed on the command
    line (not defaulted), so a ``--recipe``'s settings give way to exactly those: the arguments
    are parsed a second time with every default suppressed (abbreviations and ``--x=v`` too)."""
    parse = parser.parse_known_args

    def parse_remembering(args=None, namespace=None):  # type: ignore[no-untyped-def]
        parsed, extras = parse(args, namespace)
        actions = list(parser._actions)
        saved = ([a.default for a in actions], dict(parser._defaults))
        try:
            for action in actions:
                action.default = argparse.SUPPRESS
            parser._defaults.clear()
            typed, _ = parse(args, None)
        finally:
            for action, default in zip(actions, saved[0]):
                action.default = default
            parser._defaults.update(saved[1])
        parsed.given = set(vars(typed))
        return parsed, extras

    parser.parse_known_args = parse_remembering  # type: ignore[method-assign]


def _train(args: argparse.Namespace) -> int:
    from ..experiment import resume_run, train_run
    from ..recipes import recipe_lines
    from ..train import TrainConfig, current_distributed, init_distributed

    epochs = getattr(args, "epochs", None)
    if args.recipe == "list":
        print("\n".join(recipe_lines()))
        return 0
    if args.resume and args.recipe:
        raise CnnlabError(
            f"--recipe {args.recipe} with --resume {args.resume}: a resumed run keeps its saved "
            "settings; drop --recipe"
        )
    if args.resume:
        init_distributed(args.device)
        result = resume_run(args.resume, epochs, Path(args.runs_dir), args.tensorboard)
    else:
        names = {f.name for f in fields(TrainConfig)}
        values = {k: v for k, v in vars(args).items() if k in names}
        values["model_options"] = dict(args.model_option)
        values["epochs"] = epochs if epochs is not None else TrainConfig.epochs
        values["progress"] = not args.no_progress
        if args.recipe:
            values = _recipe_values(args.recipe, values, getattr(args, "given", set()))
        config = TrainConfig(**values)  # every setting is checked here, on every rank
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


def _recipe_values(recipe: str, values: dict, given: set[str]) -> dict:
    """The recipe's settings, with the options typed on the command line on top."""
    from dataclasses import asdict

    from ..recipes import recipe_config

    typed = {"model_option": "model_options", "no_progress": "progress"}
    explicit = {typed.get(k, k) for k in given}
    overrides = {k: v for k, v in values.items() if k in explicit or k == "progress"}
    return asdict(recipe_config(recipe, **overrides))


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="test a trained run", description="Evaluate a run's model on its test set."
    )
    p.add_argument("run", help="run folder, or its name under --runs-dir")
    add_run_options(p)
    add_data_options(p, "data folder (else the run's, $CNNLAB_DATA)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from ..experiment import evaluate_run, load_run

    trained = load_run(args.run, Path(args.runs_dir))
    result = evaluate_run(trained, args.data_dir)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    config = trained.config
    print(f"{trained.run_dir}: {config.model} after {trained.epoch} epochs, {config.dataset} test")
    print(
        f"test loss {result.loss:.4f}   test accuracy {result.accuracy:.2%} "
        f"({result.right}/{result.images})"
    )
    for name, value in result.per_class.items():
        print(f"  {name:>12}  {value:7.2%}")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files with a trained run or any model",
        description="Print the top-k classes for each image. Images are converted to the "
        "model's channels and resized to its input size, with a notice.",
    )
    p.add_argument("run", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument("images", nargs="+", help="PNG/JPEG files")
    add_source_options(p)
    add_run_options(p)
    p.add_argument("-k", "--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    import torch

    from ..experiment import predict, read_image

    if args.top_k < 1:
        raise CnnlabError(f"--top-k {args.top_k}: expected a positive number")
    trained = load_any(args, notes_to_stderr=args.json)
    k = min(args.top_k, len(trained.classes))
    batch = [read_image(path, trained.in_channels, trained.input_size) for path in args.images]
    probabilities = predict(trained, torch.cat([image for image, _ in batch]))
    results = []
    for path, (_, notes), row in zip(args.images, batch, probabilities):
        top = row.topk(k)
        results.append(
            {
                "image": path,
                "notes": notes,
                "top": [
                    {"class": trained.classes[i], "index": int(i), "probability": float(p)}
                    for p, i in zip(top.values, top.indices)
                ],
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for item in results:
        notes = f"  ({'; '.join(item['notes'])})" if item["notes"] else ""
        print(f"{item['image']}{notes}")
        for rank, guess in enumerate(item["top"], 1):
            print(f"  {rank}. {guess['class']:<14} {guess['probability']:7.2%}")
    return 0


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models", description="List models.")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'cifar_*'")
    p.add_argument(
        "--options",
        action="store_true",
        help="list each model's -O options with their defaults instead (binary=false, one "
        "sigmoid logit for two classes, is every model's)",
    )
    p.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
    import torch

    from ..models import create_model, get_model_entry, list_models

    names = list_models(args.pattern)
    if not names:
        raise CnnlabError(f"no model matches {args.pattern!r}; `cnnlab models` lists them all")
    if args.options:  # -O KEY=VALUE as one would type it
        for name in names:
            options = get_model_entry(name).options().items()
            listed = ", ".join(
                f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options
            )
            print(f"{name:<22}-O {listed}")
        return 0
    print(f"{'model':<22}{'input':>10}{'classes':>8}{'parameters':>13}  design")
    for name in names:
        entry = get_model_entry(name)
        with torch.device("meta"):  # counts only: no memory for VGG-16's 138M weights
            params = sum(p.numel() for p in create_model(name).parameters())
        shape = f"{entry.default_in_channels}x{entry.default_input_size}x{entry.default_input_size}"
        classes = entry.default_num_classes
        print(f"{name:<22}{shape:>10}{classes:>8}{params:>13,}  {entry.summary}")
    print(
        "parameters are for the design's input and class count; training sizes the model to "
        "the data set (its channels, image side and classes)"
    )
    return 0


def add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="which data sets are found where",
        description="Show where each data set is found: --data-dir, $CNNLAB_DATA, user cache.",
    )
    add_data_options(p)
    p.set_defaults(handler=_data)


def _data(args: argparse.Namespace) -> int:
    from ..data import find_datasets
    from ..data.datasets import data_roots

    print("searched: " + "; ".join(f"{root} ({why})" for root, why in data_roots(args.data_dir)))
    for row in find_datasets(args.data_dir):
        print(f"{row['dataset']:<15}{row['status']:<9}{row['where']}")
    return 0
