"""``cnnlab train``, ``eval`` and ``predict``: training a run and using it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from ._options import EveryDefaultFormatter, Parser, add_model_option, add_run_options


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


def train_arguments(p: argparse.ArgumentParser, typed_only: bool = False) -> dict[str, str]:
    """The options of ``cnnlab train``: ``--recipe`` and ``--config``, then a flag for every
    :class:`~cnnlab.train.config.TrainConfig` field declared with a group, in the fields'
    order, with the command's own options (download, run folder) in their places. With
    ``typed_only`` every default is ``SUPPRESS``, so that parsing with it tells the options
    typed from those defaulted. Returns the fields by argparse destination."""
    from ..train.recipes import recipe_names

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
    return config_flags(p, default, {"image_channels": _download, "keep": _run_folder})


def config_flags(
    p: argparse.ArgumentParser,
    default: Callable[[Any], Any],
    before: dict[str, Callable[[Any, Callable[[Any], Any]], None]],
) -> dict[str, str]:
    """A flag for every TrainConfig field that has a group, in argument groups named by it;
    ``before[field](group, default)`` adds the command's own options just before that field's."""
    from ..train.config import TrainConfig

    groups: dict[str, Any] = {}
    dests = {}
    for spec in fields(TrainConfig):
        meta = spec.metadata
        if meta.get("group") is None:
            continue
        if meta["group"] not in groups:
            groups[meta["group"]] = p.add_argument_group(meta["group"])
        group = groups[meta["group"]]
        if spec.name in before:
            before[spec.name](group, default)
        value = spec.default if spec.default is not MISSING else None
        dests[_add_flag(group, spec, default(value))] = spec.name
    return dests


# how a field's annotation reads its flag's text (any other: as text)
_FLAG_TYPES = {"int": int, "float": float}
_SWITCHES = {"on": "store_true", "both": argparse.BooleanOptionalAction, "off": "store_false"}


def _add_flag(group: Any, spec: Field[Any], default: Any) -> str:
    """Adds one field's flag to ``group``; returns its argparse destination."""
    meta = spec.metadata
    if meta["flag"] == "-O":
        add_model_option(group, meta["help"], default)
        return "model_option"
    kind: dict[str, Any] = {"default": default, "help": meta["help"]}
    if meta["switch"]:
        kind.update(action=_SWITCHES[meta["switch"]], dest=spec.name)
    else:
        parse = meta["parse"] or _FLAG_TYPES.get(str(spec.type).split(" | ")[0])
        kind.update({"type": parse} if parse else {})
        kind.update({k: meta[k] for k in ("choices", "metavar") if meta[k] is not None})
    group.add_argument(meta["flag"] or f"--{spec.name.replace('_', '-')}", **kind)
    return spec.name


def _download(group: Any, default: Callable[[Any], Any]) -> None:
    group.add_argument(
        "--download",
        action="store_true",
        default=default(False),
        help="download missing data (torchvision)",
    )


def _run_folder(group: Any, default: Callable[[Any], Any]) -> None:
    """The run folder's options: its name, where it goes, replacing one, resuming one."""
    group.add_argument(
        "--name", default=default(None), help="run folder name (default: <model>-<dataset>[-N])"
    )
    add_run_options(group, "folder that holds run folders", default("runs"))
    group.add_argument(
        "--overwrite",
        action="store_true",
        default=default(False),
        help="replace an existing --name folder",
    )
    group.add_argument(
        "--resume",
        metavar="RUN",
        default=default(None),
        help="continue a killed run with its saved config (only --epochs and --tensorboard may "
        "change)",
    )


def _train(args: argparse.Namespace) -> int:
    from ..runs.start import resume_run, train_run
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
    from ..train.recipes import layered_settings

    dests = train_arguments(argparse.ArgumentParser(add_help=False))
    typed = {dests[k]: getattr(args, k) for k in given if k in dests}
    if "model_options" in typed:
        typed["model_options"] = dict(typed["model_options"])
    return layered_settings(typed, args.config, args.recipe)
