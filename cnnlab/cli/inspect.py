"""``cnnlab shapes``, ``summary``, ``example`` and ``filter``: the arithmetic of a design, the
course's worked examples and a classic filter on a photo, no trained run needed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CnnlabError
from ..outputs import check_output_file
from ._options import add_model_option, add_out_option, add_run_options, option_value, wrote


def add_shapes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shapes",
        help="shape arithmetic of a layer list, no model needed",
        description="Print, for each layer: input and output shape, the output-size formula "
        "with the numbers filled in, parameters, multiply-adds and receptive field. Every "
        "problem is reported (exit status 1 when there are any). Layers: conv(out,k,s=,p=,d=,"
        "g=) pool(k,s=,p=) avgpool(k) minpool(k) lppool(k,s=,norm=2) (L2-norm pooling) gap "
        "adaptiveavgpool(o) flatten fc(out) bn relu tanh sigmoid softmax dropout(p) lrn.",
        epilog='example: cnnlab shapes "conv(6,5) relu pool(2) conv(16,5) pool(2) flatten '
        'fc(120) fc(84) fc(10)" --input 1x32x32; '
        'cnnlab shapes --compare "two 3x3: conv(64,3,p=1) relu conv(64,3,p=1) relu" '
        '--compare "one 5x5: conv(64,5,p=2) relu" --input 64x32x32',
    )
    p.add_argument("layers", nargs="?", help="inline layer list, or a .json/.yaml file")
    p.add_argument("--input", help="input shape without batch: 1x28x28, 1x100, 3x16x112x112")
    p.add_argument(
        "--compare",
        action="append",
        metavar="LAYERS",
        help="compare designs instead: give two or more layer lists (repeat the option), each "
        "optionally labelled 'LABEL: LAYERS'; prints receptive field, parameters, multiply-adds "
        "and non-linearities of each, and what the designs with the same field teach",
    )
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(handler=_shapes)


def _shapes(args: argparse.Namespace) -> int:
    from ..inspect.shapes import (
        compare_designs,
        format_designs,
        load_specs,
        parse_shape,
        shape_table,
    )

    if args.compare:
        if not args.input:
            raise CnnlabError("--compare needs --input, e.g. --input 192x28x28")
        if len(args.compare) < 2:
            raise CnnlabError(
                f"--compare given {len(args.compare)} time(s): expected two or more designs, e.g. "
                '--compare "two 3x3: conv(64,3,p=1) relu conv(64,3,p=1) relu" --compare '
                '"one 5x5: conv(64,5,p=2) relu"'
            )
        designs = {}
        for text in args.compare:
            label, _, layers = text.rpartition(":")
            designs[label.strip() or layers.strip()] = layers
        results = compare_designs(designs, args.input)
        print(
            json.dumps(results, indent=2)
            if args.json
            else format_designs(results, parse_shape(args.input))
        )
        return 0
    if not args.layers:
        raise CnnlabError(
            'give a layer list, e.g. cnnlab shapes "conv(6,5) pool(2)" --input 1x32x32'
        )
    specs, file_input = load_specs(args.layers)
    shape = args.input or file_input
    if shape is None:
        raise CnnlabError("give the input shape with --input, e.g. --input 1x28x28 (C x H x W)")
    report = shape_table(specs, shape)
    if args.json:
        print(
            json.dumps(
                {
                    "input": list(report.input_shape),
                    "layers": report.to_dicts(),
                    "params": report.params,
                    "macs": report.macs,
                    "problems": report.problems,
                },
                indent=2,
            )
        )
    else:
        print(report)
    return 1 if report.problems else 0


def add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="layer table of a model: shapes, formulas, params, mult-adds, RF",
        description="Like Keras's model.summary() and torchinfo, plus the output-size formula, "
        "the arithmetic of each count and the receptive field. Runs on PyTorch's meta device: "
        "no memory for activations, no real forward pass. MODEL is a cnnlab model name, "
        "torchvision:NAME, a run folder, or package.module:callable.",
    )
    p.add_argument("model")
    p.add_argument("--input", help="input shape without batch, e.g. 1x28x28 (default: the model's)")
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="output classes (default: the design's: 1000 for the ImageNet architectures and "
        "torchvision models, 10 for the MNIST/CIFAR ones; a run's own)",
    )
    add_model_option(
        p,
        "model option, e.g. -O modern=true, -O head=gap (`cnnlab models --options` lists each "
        "model's)",
        parse=False,
    )
    add_run_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_summary)


def _summary(args: argparse.Namespace) -> int:
    from ..inspect.summary import summary
    from ..runs.sources import resolve_model_or_run

    try:
        options = dict(option_value(o) for o in args.model_option)
    except argparse.ArgumentTypeError as error:
        raise CnnlabError(f"-O {error}") from None
    model, label, shape, made_for = resolve_model_or_run(
        args.model, args.input, args.num_classes, options, Path(args.runs_dir)
    )
    report = summary(model, shape, label, made_for)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


def add_example(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "example",
        help="the course's worked examples, every number computed and explained",
        description="Solve one of the course's worked examples with cnnlab's own code and show "
        "the arithmetic behind every number: correlation (a 5x5 binary image and a 3x3 "
        "kernel), pooling (max/average/min on a 4x4 input), padding-stride (7x7, padding 1, "
        "3x3 kernel, stride 2), inception-5x5 (the cost with and without a 1x1 reduction), "
        "parameters (10 filters of 5x5x3). The presets hold only the inputs.",
        epilog="example: cnnlab example correlation",
    )
    p.add_argument("name", nargs="?", help="the example (see --list)")
    p.add_argument("--list", action="store_true", help="list the examples and stop")
    p.add_argument("--json", action="store_true", help="print the answers as JSON")
    p.set_defaults(handler=_example)


def _example(args: argparse.Namespace) -> int:
    from ..inspect.examples import EXAMPLES, worked_example

    if args.list or not args.name:
        for example in EXAMPLES.values():
            print(f"{example.name:<16} {example.title}")
        return 0
    worked = worked_example(args.name)
    print(json.dumps(worked.to_dict(), indent=2) if args.json else worked)
    return 0


def add_filter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "filter",
        help="apply a classic filter (Sobel, Gaussian, ...) to a photo",
        description="Correlate an image with a classic kernel through cnnlab's own "
        "convolution code, borders handled like OpenCV's filter2D by default (reflect-101, "
        "scipy.ndimage's 'mirror'), so the course's OpenCV exercise gives the same picture. "
        "Signed responses (edges) are saved as their magnitude scaled to 0..255; "
        "--side-by-side draws the original beside the filtered picture.",
        epilog="example: cnnlab filter cat.png --kernel gaussian --side-by-side",
    )
    p.add_argument("image", nargs="?")
    p.add_argument("--kernel", default="sobel-x")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="box/gaussian size: odd, 1 to 255, at most the image's shorter side (default 3 "
        "for box, 5 for gaussian)",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="gaussian sigma in pixels, > 0 and at most 1000 (default 1); 0 derives it from "
        "--size as OpenCV's getGaussianKernel does",
    )
    p.add_argument("--gray", action="store_true", help="convert to gray first")
    p.add_argument(
        "--border",
        default="mirror",
        help="mirror (default: OpenCV's BORDER_REFLECT_101, filter2D's default, also accepted "
        "as reflect101), reflect (OpenCV's BORDER_REFLECT), nearest (replicate), wrap or "
        "constant (zeros)",
    )
    p.add_argument("--convolve", action="store_true", help="true convolution (kernel rotated)")
    p.add_argument("--magnitude", action="store_true", help="Sobel edge magnitude instead")
    p.add_argument(
        "--compare",
        action="store_true",
        help="draw correlation vs convolution side by side instead",
    )
    p.add_argument(
        "--side-by-side",
        action="store_true",
        help="draw the original and the filtered picture side by side (a figure) instead of "
        "saving the filtered picture alone",
    )
    add_out_option(p)
    p.add_argument("--list", action="store_true", help="list the kernels and stop")
    p.set_defaults(handler=_filter)


def _checked_filter_options(args: argparse.Namespace) -> str:
    """Every option of ``cnnlab filter`` checked before any work (the border mode returned)."""
    from ..inspect import image_filters

    if not args.image:
        raise CnnlabError("give an image: cnnlab filter photo.png --kernel sobel-x")
    if args.size is not None and args.kernel not in ("box", "gaussian"):
        raise CnnlabError(
            f"--size {args.size}: only box and gaussian kernels have a size; {args.kernel!r} is "
            "fixed (see cnnlab filter --list)"
        )
    if args.sigma is not None and args.kernel != "gaussian":
        raise CnnlabError(f"--sigma {args.sigma}: only --kernel gaussian has a sigma")
    if args.size is not None:
        image_filters.check_size(args.size, "--size")
    try:
        border = image_filters.border_mode(args.border)
    except CnnlabError as error:
        raise CnnlabError(f"--{error}") from None
    if args.side_by_side and args.compare:
        raise CnnlabError("--side-by-side and --compare both draw a figure: give one of them")
    return border


def _filter(args: argparse.Namespace) -> int:
    import numpy as np

    from ..inspect import image_filters

    if args.list:
        for name in image_filters.KERNEL_NAMES:
            weights = image_filters.kernel(name)
            print(f"{name}: {image_filters.describe(name)}")
            print("  " + image_filters.kernel_text(weights).replace("\n", "\n  "))
        return 0
    border = _checked_filter_options(args)
    weights = image_filters.kernel(args.kernel, args.size, args.sigma)
    stem = f"{Path(args.image).stem}-{'magnitude' if args.magnitude else args.kernel}"
    suffix = "-compare" if args.compare else "-side-by-side" if args.side_by_side else ""
    out = args.out or Path(f"{stem}{suffix}.png")
    check_output_file(out, "--out", (".png",))
    image = image_filters.load_image(args.image, args.gray)
    image_filters.check_fits(weights, image)
    print(f"kernel {args.kernel} ({image_filters.describe(args.kernel)}):")
    print("  " + image_filters.kernel_text(weights).replace("\n", "\n  "))
    if args.kernel == "gaussian" and args.sigma == 0:
        print(image_filters.sigma_note(weights.shape[0]))
    if args.compare:
        difference = image_filters.plot_correlation_vs_convolution(
            image, weights, out, args.kernel, border
        )
        symmetric = " (the kernel is symmetric under rotation)" if difference == 0 else ""
        print(f"largest |correlation - convolution| = {difference:.4g}{symmetric}")
        return wrote(out)
    if args.magnitude:
        result = image_filters.edge_magnitude(image, border)
        signed = True
    else:
        result = image_filters.correlate(image, weights, border, args.convolve)
        signed = bool((weights < 0).any())
    scaled = ", saved as |response| scaled to 0..255" if signed else ""
    print(
        f"image {'x'.join(map(str, image.shape))}, response from {result.min():.2f} to "
        f"{result.max():.2f}{scaled}"
    )
    if args.side_by_side:
        name = "Sobel edge magnitude" if args.magnitude else args.kernel
        shown = "reflect-101, OpenCV's default" if border == "mirror" else border
        title = f"{name} ({shown} border){' |response|' if signed else ''}"
        image_filters.plot_side_by_side(image, result, signed, out, title)
        return wrote(out)
    image_filters.save_png(image_filters.to_uint8(result, signed).astype(np.uint8), out)
    return wrote(out)
