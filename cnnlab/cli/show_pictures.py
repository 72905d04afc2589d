"""``cnnlab show activations|pixels|pooling|samples``: the course's lessons that need no
trained run: activation functions with their derivatives, an image as a matrix of numbers,
max/average/min pooling against a strided convolution, and a look at a data set."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CnnlabError
from ..outputs import check_output_file
from ._options import add_data_options, add_out_option, wrote

IMAGE_HELP = "PNG/JPEG file, or DATASET:N for test image N of mnist, fashion-mnist, cifar10, digits"


def add_picture_views(views: argparse._SubParsersAction) -> None:
    """Declare the sub-commands on ``cnnlab show``'s sub-parsers."""
    q = views.add_parser(
        "activations",
        help="sigmoid, tanh, ReLU, Leaky ReLU, ELU, GELU, softmax and their derivatives",
        description="Plot each activation and its derivative, computed by autograd, and print "
        "the largest slope of each: a gradient passing n layers is multiplied by at most "
        "max f' n times (sigmoid: 0.25^n, it vanishes), while ReLU's slope is 1 and costs one "
        "comparison. softmax is shown as class 0's probability against two logits at 0.",
    )
    q.add_argument("--layers", type=int, default=10, help="depth for the vanishing-gradient sum")
    add_out_option(q, Path("activations.png"), help="PNG to write")
    q.set_defaults(handler=_show_activations)

    q = views.add_parser(
        "pixels",
        help="an image (or a crop) as a matrix of numbers, e.g. a handwritten 2: mnist:1",
        description="Print the pixel values of a small image or a crop of one, row by row, "
        "and draw them with the value in each cell (the course's handwritten 2 is mnist:1).",
    )
    q.add_argument("image", help=IMAGE_HELP)
    q.add_argument("--crop", default=None, metavar="Y,X,H,W", help="the window to show")
    q.add_argument("--size", type=int, default=None, help="shrink so the longer side is N")
    q.add_argument("--gray", action="store_true", help="convert a colour image to gray")
    add_data_options(q, "data folder for DATASET:N")
    add_out_option(q, Path("pixels.png"), help="PNG to write")
    q.set_defaults(handler=_show_pixels)

    q = views.add_parser(
        "pooling",
        help="max vs average vs min pooling of a real picture, and a strided convolution",
        description="Down-sample a picture by max, average and min pooling (window and stride "
        "--size) beside two stride-N convolutions: box weights (equal to average pooling) and "
        "Sobel-x weights (what a learned down-sampler may keep instead). Bright objects on "
        "dark survive max pooling, dark ones on bright survive min pooling.",
    )
    q.add_argument("image", help=IMAGE_HELP)
    q.add_argument("--size", type=int, default=2, help="pooling window and stride")
    add_data_options(q, "data folder for DATASET:N")
    add_out_option(q, Path("pooling.png"), help="PNG to write")
    q.set_defaults(handler=_show_pooling)

    q = views.add_parser(
        "samples", help="a grid of training images, one row per class, titled with the class names"
    )
    q.add_argument("dataset", choices=["mnist", "fashion-mnist", "cifar10", "digits"])
    q.add_argument("--per-class", type=int, default=8, help="images per class")
    q.add_argument("--split", choices=["train", "test"], default="train")
    q.add_argument("--data-variant", default=None, help="cifar10: official | jpeg | subset")
    q.add_argument("--seed", type=int, default=0, help="which images are drawn")
    add_data_options(q)
    add_out_option(q, None, help="PNG to write (default: samples-DATASET.png)")
    q.set_defaults(handler=_show_samples)


def _show_activations(args: argparse.Namespace) -> int:
    from ..inspect.activations import activation_curves, vanishing_factor
    from ..inspect.lesson_plots import plot_activations

    if args.layers < 1:
        raise CnnlabError(f"--layers {args.layers}: expected a depth of at least 1")
    path = check_output_file(args.out, "--out", (".png",))
    curves = activation_curves()
    print(
        f"{'function':<11} {'max slope':>9} {'at x':>6}  {'slope^' + str(args.layers):>10}  formula"
    )
    for curve in curves:
        print(
            f"{curve.name:<11} {curve.max_derivative:9.4f} {curve.x_of_max_derivative:6.2f}  "
            f"{vanishing_factor(curve.max_derivative, args.layers):10.3g}  {curve.formula}"
        )
    sigmoid = curves[0].max_derivative
    print(
        f"why gradients vanish: backpropagation multiplies the gradient by f'(x) at every "
        f"layer; sigmoid's f' is at most {sigmoid:.2f}, so after {args.layers} layers at most "
        f"{vanishing_factor(sigmoid, args.layers):.3g} of it is left. ReLU's f' is 1 wherever "
        "the unit is active, so the gradient passes unchanged, and ReLU needs no exponential."
    )
    plot_activations(curves, path)
    return wrote(path)


def _show_pixels(args: argparse.Namespace) -> int:
    from ..inspect.lesson_plots import plot_pixels
    from ..inspect.pictures import (
        check_cells,
        crop_pixels,
        load_picture,
        parse_crop,
        pixel_text,
        resize_pixels,
    )

    crop = parse_crop(args.crop) if args.crop else None
    path = check_output_file(args.out, "--out", (".png",))
    picture = load_picture(args.image, args.data_dir, args.gray)
    pixels = resize_pixels(crop_pixels(picture.pixels, crop), args.size)
    check_cells(pixels)
    rows, cols = pixels.shape[:2]
    where = f", crop y,x,h,w = {args.crop}" if crop else ""
    kind = "gray 0 = black .. 255 = white" if pixels.ndim == 2 else "r/g/b per pixel"
    print(f"{picture.label}{where}: {rows} rows x {cols} columns ({kind})")
    print(pixel_text(pixels))
    print(f"min {int(pixels.min())}, max {int(pixels.max())}, mean {float(pixels.mean()):.1f}")
    plot_pixels(pixels, path, f"{picture.label}{where}: {rows}x{cols} values")
    return wrote(path)


def _show_pooling(args: argparse.Namespace) -> int:
    from ..inspect.lesson_plots import plot_pooling
    from ..inspect.pictures import load_picture, pooling_views

    path = check_output_file(args.out, "--out", (".png",))
    picture = load_picture(args.image, args.data_dir)
    views = pooling_views(picture.pixels, args.size)
    print(
        f"{picture.label}: {picture.pixels.shape[1]}x{picture.pixels.shape[0]}, "
        f"mean brightness {picture.pixels.mean():.1f}"
    )
    for view in views:
        height, width = view.image.shape[:2]
        print(
            f"{view.name:<29} {width}x{height}  mean {view.image.mean():6.1f}  "
            f"weights {view.parameters:>3}  {view.explanation}"
        )
    average, box = views[1].image, views[3].image
    print(
        f"average pooling vs the box-weight stride conv: max difference "
        f"{abs(average - box).max():.2g} (the same operation)"
    )
    plot_pooling(picture.pixels, views, path, args.size)
    return wrote(path)


def _show_samples(args: argparse.Namespace) -> int:
    import torch

    from ..data import load_dataset
    from ..inspect.lesson_plots import plot_samples

    if not 1 <= args.per_class <= 32:
        raise CnnlabError(f"--per-class {args.per_class}: expected 1 .. 32 images per class")
    path = check_output_file(args.out or Path(f"samples-{args.dataset}.png"), "--out", (".png",))
    data = load_dataset(args.dataset, args.split, root=args.data_dir, variant=args.data_variant)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(data), generator=generator)
    chosen = []
    for label in range(len(data.classes)):
        mine = order[data.labels[order] == label][: args.per_class]
        chosen.append(mine)
        print(
            f"{label:>3} {data.classes[label]:<14} {int((data.labels == label).sum()):>6} "
            f"images, shown: {', '.join(map(str, mine.tolist()))}"
        )
    indices = torch.cat(chosen)
    shape = "x".join(map(str, data.images.shape[1:]))
    title = (
        f"{args.dataset} {args.split}: {len(data)} images of {shape}, {len(data.classes)} classes"
    )
    plot_samples(data.images[indices], data.labels[indices], data.classes, path, title)
    return wrote(path)
