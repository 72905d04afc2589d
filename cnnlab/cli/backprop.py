"""``cnnlab backprop``: backpropagation through the course's small CNN on real numbers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CnnlabError
from ._options import SOURCE_HELP, DefaultsFormatter, add_data_options, add_run_options


def _numbers(text: str) -> list[float]:
    try:
        return [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected numbers separated by commas, e.g. 0.1,0.5,-0.2"
        ) from None


def add_backprop(sub: argparse._SubParsersAction) -> None:
    from ..inspect.backprop_walk import ACTIVATIONS, COSTS, POOLS

    p = sub.add_parser(
        "backprop",
        help="backpropagation step by step on real numbers, with the course's symbols",
        description="Walk the course's example network (an N x N input, one 3x3 filter as a "
        "correlation, an activation, 2x2 mean or max pooling, flatten q = o'P + p', a fully "
        "connected output layer) through the forward pass and the backward pass: CBP1 at the "
        "output, BP3/BP4 for its weights, the delta through flatten and pooling (up-sampling), "
        "BP2 at the convolution, and its filter, bias and input gradients (the delta map "
        "convolved with the filter rotated by 180 degrees). Every gradient is checked against "
        "torch autograd. With SOURCE and IMAGE: one real SGD step of a trained run (or any "
        "model) on that image, layer by layer from the output down: the delta's size, the "
        "up-sampling at each pool, the filter rotated 180 degrees at each convolution, the "
        "update's size per layer, each rule checked against autograd, and the loss after the "
        "step.",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument("source", nargs="?", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument(
        "image", nargs="?", help="with SOURCE: a PNG/JPEG file, or test:N for a run's test image"
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="with SOURCE: the SGD step's learning rate (default: the run's, else 0.01)",
    )
    p.add_argument(
        "--class",
        dest="class_index",
        type=int,
        default=None,
        help="with SOURCE: the class the loss is for (default: test:N's true class, else the "
        "predicted one)",
    )
    p.add_argument("--size", type=int, default=6, metavar="N", help="input side N")
    p.add_argument("--outputs", type=int, default=2, metavar="R", help="output units R")
    p.add_argument("--activation", default="sigmoid", choices=ACTIVATIONS)
    p.add_argument("--pool", default="mean", choices=POOLS, help="the pooling layer's kind")
    p.add_argument("--cost", default="squared", choices=COSTS)
    p.add_argument("--target", type=int, default=0, help="the true class r")
    p.add_argument("--seed", type=int, default=0, help="picks the random example numbers")
    p.add_argument(
        "--input",
        type=_numbers,
        default=None,
        metavar="V,V,...",
        help="the input's N*N values row by row (instead of random ones)",
    )
    p.add_argument(
        "--filter",
        type=_numbers,
        default=None,
        metavar="V,V,...",
        help="the filter's 9 values row by row (instead of random ones)",
    )
    p.add_argument("--json", action="store_true", help="every number as JSON")
    add_run_options(p)
    add_data_options(p, "data folder for test:N")
    p.set_defaults(handler=_backprop)


def _real_step(args: argparse.Namespace) -> int:
    """``cnnlab backprop SOURCE IMAGE``: one SGD step of a real model on one image."""
    from ..inspect.backprop_step import sgd_step, step_lines
    from ..runs.sources import load_source
    from ._options import input_image

    if args.image is None:
        raise CnnlabError(
            f"backprop {args.source}: give an image too, e.g. cnnlab backprop {args.source} "
            "test:0 (or leave both out for the course's small example network)"
        )
    source = load_source(args.source, Path(args.runs_dir), args.seed, False, None)
    for note in source.notes or []:
        print(f"note: {note}")
    image, label, true, _ = input_image(source, args.image, args.data_dir)
    lr = args.lr if args.lr is not None else (source.run.config.lr if source.run else 0.01)
    if not lr > 0:
        raise CnnlabError(f"--lr {lr}: expected a positive learning rate, e.g. --lr 0.01")
    if args.lr is None and source.run and source.run.config.optimizer != "sgd":
        print(
            f"note: the run trained with {source.run.config.optimizer}; this is one plain SGD "
            f"step at its rate {lr:g} (--lr to choose another)"
        )
    target = args.class_index if args.class_index is not None else true
    step = sgd_step(source.model, source.preprocess(image), target, lr)
    if args.json:
        print(json.dumps(step.to_dict()))
    else:
        print("\n".join(step_lines(step, list(source.classes), f"{source.label}, {label}")))
    return 0


def _backprop(args: argparse.Namespace) -> int:
    import numpy as np

    if args.source is not None:
        return _real_step(args)

    from ..inspect.backprop_walk import example_network, walk, walk_lines

    if not 4 <= args.size <= 32:
        raise CnnlabError(f"--size {args.size}: expected 4..32 (the walk prints every number)")
    if not 0 <= args.seed < 2**32:
        raise CnnlabError(f"--seed {args.seed}: expected 0 <= seed < 2**32")
    if not 1 <= args.outputs <= 10:
        raise CnnlabError(f"--outputs {args.outputs}: expected 1..10")
    net = example_network(
        args.size, args.outputs, args.seed, args.activation, args.pool, args.cost, args.target
    )
    for given, name, shape in (
        (args.input, "--input", net.image.shape),
        (args.filter, "--filter", net.kernel.shape),
    ):
        if given is None:
            continue
        if len(given) != shape[0] * shape[1]:
            raise CnnlabError(
                f"{name} has {len(given)} values: expected {shape[0]}x{shape[1]} = "
                f"{shape[0] * shape[1]}, row by row"
            )
        values = np.asarray(given, dtype=np.float64).reshape(shape)
        if name == "--input":
            net.image = values
        else:
            net.kernel = values
    result = walk(net)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print("\n".join(walk_lines(result)))
    return 0
