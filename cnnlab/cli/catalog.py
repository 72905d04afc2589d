"""``cnnlab models`` and ``cnnlab data``: which models there are, and which data sets are
found where."""

from __future__ import annotations

import argparse

from ..errors import CnnlabError
from ._options import add_data_options


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
