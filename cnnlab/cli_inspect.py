"""The ``cnnlab`` commands that explain: ``shapes``, ``summary``, ``show ...`` and ``filter``."""

from __future__ import annotations

import argparse
import errno
import json
import socket
from pathlib import Path
from typing import Any

from .errors import CnnlabError
from .outputs import check_output_file


def _option_dict(text: str) -> dict[str, Any]:
    """``"pairs=8,skip=false"`` -> options, each read as ``-O key=value`` is."""
    from .cli import _option_value

    options = {}
    for part in filter(None, text.split(",")):
        try:
            key, value = _option_value(part.strip())
        except argparse.ArgumentTypeError:
            raise CnnlabError(f"model option {part!r}: expected key=value, e.g. pairs=8") from None
        options[key] = value
    return options


def _wrote(path: Path) -> None:
    print(f"wrote {path}")


# ----------------------------------------------------------------------------------- shapes


def add_shapes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shapes", help="shape arithmetic of a layer list, no model needed",
        description="Print, for each layer: input and output shape, the output-size formula "
        "with the numbers filled in, parameters, multiply-adds and receptive field. Every "
        "problem is reported (exit status 1 when there are any). Layers: conv(out,k,s=,p=,d=,"
        "g=) pool(k,s=,p=) avgpool(k) gap adaptiveavgpool(o) flatten fc(out) bn relu tanh "
        "sigmoid softmax dropout(p) lrn.",
        epilog='example: cnnlab shapes "conv(6,5) relu pool(2) conv(16,5) pool(2) flatten '
        'fc(120) fc(84) fc(10)" --input 1x32x32',
    )  # fmt: skip
    p.add_argument("layers", nargs="?", help="inline layer list, or a .json/.yaml file")
    p.add_argument("--input", help="input shape without batch: 1x28x28, 1x100, 3x16x112x112")
    p.add_argument(
        "--compare", action="append", metavar="LAYERS",
        help="compare designs instead: give two or more layer lists (repeat the option)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(handler=_shapes)


def _shapes(args: argparse.Namespace) -> int:
    from .inspect.shapes import (
        compare_designs,
        format_designs,
        load_specs,
        parse_shape,
        shape_table,
    )

    if args.compare:
        if not args.input:
            raise CnnlabError("--compare needs --input, e.g. --input 192x28x28")
        designs = {text: text for text in args.compare}
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
        print(json.dumps({"input": list(report.input_shape), "layers": report.to_dicts(),
                          "params": report.params, "macs": report.macs,
                          "problems": report.problems}, indent=2))  # fmt: skip
    else:
        print(report)
    return 1 if report.problems else 0


# ---------------------------------------------------------------------------------- summary


def add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary", help="layer table of a model: shapes, formulas, params, mult-adds, RF",
        description="Like Keras's model.summary() and torchinfo, plus the output-size formula, "
        "the arithmetic of each count and the receptive field. Runs on PyTorch's meta device: "
        "no memory for activations, no real forward pass. MODEL is a cnnlab model name, "
        "torchvision:NAME, a run folder, or package.module:callable.",
    )  # fmt: skip
    p.add_argument("model")
    p.add_argument("--input", help="input shape without batch, e.g. 1x28x28 (default: the model's)")
    p.add_argument(
        "--num-classes", type=int, default=None,
        help="output classes (default: the design's: 1000 for the ImageNet architectures and "
        "torchvision models, 10 for the MNIST/CIFAR ones; a run's own)",
    )  # fmt: skip
    p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. -O modern=true")  # fmt: skip
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_summary)


def build_model_for_summary(
    text: str, input_shape: str | None, num_classes: int | None, options: dict[str, Any],
    runs_dir: Path = Path("runs"),
) -> tuple[Any, str, str, str | None]:  # fmt: skip
    """(model, label, input shape, the input the model was made for) from a cnnlab name,
    ``torchvision:NAME``, a run folder or ``module:callable``; registry and torchvision models
    are built on the meta device. The label names the class count used."""
    import importlib

    import torch
    from torch import nn

    from .inspect.shapes import parse_shape
    from .models import create_model, get_model_entry, list_models

    if num_classes is not None and num_classes < 1:
        raise CnnlabError(f"--num-classes {num_classes}: expected a positive number, e.g. 10")
    shape = parse_shape(input_shape, "--input") if input_shape else None
    if text in list_models():
        entry = get_model_entry(text)
        made_for = f"{entry.default_in_channels}x{entry.default_input_size}x" + str(
            entry.default_input_size
        )
        _image_input(text, shape, made_for)
        channels = shape[0] if shape else entry.default_in_channels
        size = shape[1] if shape else entry.default_input_size
        options = dict(options)
        for key in ("in_channels", "input_size"):
            if key in options:
                raise CnnlabError(f"-O {key}: give the input shape with --input, e.g. {made_for}")
        classes = num_classes or options.pop("num_classes", None) or entry.default_num_classes
        with torch.device("meta"):
            model = create_model(
                text, num_classes=classes, in_channels=channels, input_size=size, **options
            )
        return model, f"{text} ({classes} classes)", input_shape or made_for, made_for
    if text.startswith("torchvision:"):
        import torchvision

        name = text.split(":", 1)[1]
        if name not in torchvision.models.list_models():
            raise CnnlabError(
                f"torchvision has no model {name!r}; see torchvision.models.list_models()"
            )
        kwargs = dict(options)
        if num_classes:
            kwargs["num_classes"] = num_classes
        if name.startswith(("googlenet", "inception")):
            kwargs.setdefault("init_weights", False)
        try:
            with torch.device("meta"):
                model = torchvision.models.get_model(name, weights=None, **kwargs)
        except NotImplementedError:  # a builder that reads tensor values (RegNet's widths)
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        except TypeError as error:
            raise CnnlabError(f"{text} -O {' -O '.join(options)}: {error}") from None
        classes = kwargs.get("num_classes", 1000)
        made_for = "3x16x112x112" if name in torchvision.models.list_models(
            torchvision.models.video
        ) else "3x224x224"  # fmt: skip
        return model, f"{text} ({classes} classes)", input_shape or made_for, made_for
    if ":" in text and not Path(text).exists():
        module_name, _, attr = text.partition(":")
        if not input_shape:
            raise CnnlabError(f"{text}: give --input, e.g. --input 3x32x32")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise CnnlabError(f"cannot import {text}: {error}") from None
        if isinstance(factory, nn.Module):
            model = factory
        elif callable(factory):
            try:
                model = factory(**options)
            except Exception as error:  # the user's own code: its first line, not a traceback
                first = (str(error).strip().splitlines() or [""])[0][:200]
                raise CnnlabError(
                    f"{text}({', '.join(f'{k}={v!r}' for k, v in options.items())}) failed: "
                    f"{type(error).__name__}: {first}"
                ) from None
        else:
            model = factory
        if not isinstance(model, nn.Module):
            raise CnnlabError(
                f"{text} gave {type(model).__name__} {str(model)[:40]!r}, not a torch.nn.Module;"
                " name a model class or a function that returns one, e.g. torchvision.models:"
                "resnet18"
            )
        return model, text, input_shape, None
    from .experiment import load_run

    trained = load_run(text, runs_dir)
    made_for = f"{trained.in_channels}x{trained.input_size}x{trained.input_size}"
    label = f"{trained.run_dir} ({trained.spec['name']}, {len(trained.classes)} classes)"
    _image_input(f"run {text}", shape, made_for)
    if num_classes is not None and num_classes != len(trained.classes):
        raise CnnlabError(
            f"--num-classes {num_classes}: run {text} has {len(trained.classes)} classes, fixed "
            "by its training; leave --num-classes out"
        )
    if shape and shape[0] != trained.in_channels:
        raise CnnlabError(
            f"--input {input_shape}: run {text} was trained on {made_for} images "
            f"({trained.in_channels} channel(s), not {shape[0]}); give --input {made_for} or "
            "leave --input out"
        )
    return trained.model, label, input_shape or made_for, made_for


def _image_input(what: str, shape: tuple[int, ...] | None, made_for: str) -> None:
    """cnnlab's models and runs take 2-D images: C x H x W."""
    if shape is not None and len(shape) != 3:
        raise CnnlabError(
            f"--input {'x'.join(map(str, shape))}: {what} takes images as C x H x W (channels, "
            f"height, width; no batch axis), e.g. --input {made_for}"
        )


def _summary(args: argparse.Namespace) -> int:
    from .cli import _option_value
    from .inspect.summary import summary

    try:
        options = dict(_option_value(o) for o in args.option)
    except argparse.ArgumentTypeError as error:
        raise CnnlabError(f"-O {error}") from None
    model, label, shape, made_for = build_model_for_summary(
        args.model, args.input, args.num_classes, options, Path(args.runs_dir)
    )
    report = summary(model, shape, label, made_for)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0


# ------------------------------------------------------------------------------------- show


def add_show(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show", help="pictures of a trained run: feature maps, filters, Grad-CAM, ...",
        description="Draw a view of a trained run as a PNG (default: RUN/inspect/...).",
    )  # fmt: skip
    views = p.add_subparsers(dest="view", required=True, metavar="VIEW")

    def common(q, image: bool) -> None:
        q.add_argument("run", help="run folder, or its name under --runs-dir")
        if image:
            q.add_argument("image", help="PNG/JPEG file, or test:N for test-set image N")
        q.add_argument("--runs-dir", default="runs")
        q.add_argument("--out", type=Path, default=None, help="PNG to write")
        q.add_argument("--data-dir", default=None, help="data folder for test:N and mistakes")

    q = views.add_parser("featuremaps", help="feature maps of one layer or of every layer")
    common(q, True)
    q.add_argument("--layer", action="append", help="layer name as in `cnnlab summary` (repeat)")
    q.set_defaults(handler=_show_featuremaps)
    q = views.add_parser("filters", help="a convolution's filters (the first by default)")
    common(q, False)
    q.add_argument("--layer", default=None)
    q.set_defaults(handler=_show_filters)
    for name, helptext in (("cam", "Grad-CAM heat map"), ("saliency", "input-gradient saliency")):
        q = views.add_parser(name, help=f"{helptext} for a class, over the image")
        common(q, True)
        q.add_argument("--class", dest="target", default=None, help="class index or name")
        if name == "cam":
            q.add_argument("--layer", default=None, help="target layer (default: last conv)")
        q.set_defaults(handler=_show_explanation, method=name)
    q = views.add_parser("mistakes", help="the most confident wrong test predictions")
    common(q, False)
    q.add_argument("-k", type=int, default=16)
    q.set_defaults(handler=_show_mistakes)
    for name in ("curves", "confusion"):
        q = views.add_parser(name, help=f"the run's {name} (from its metrics / test set)")
        common(q, False)
        q.set_defaults(handler=_show_run_figure, figure=name)
    q = views.add_parser(
        "gradflow", help="per-layer gradient norms of models side by side",
        description="Train each model a few SGD steps on real data and plot every weight's "
        "gradient norm, input to output. Default: a 17-convolution plain stack against its "
        "residual twin. MODEL: name[:key=value,...] or a run folder.",
    )  # fmt: skip
    q.add_argument("models", nargs="*", default=[
        "cifar_residual:pairs=8,skip=false", "cifar_residual:pairs=8"])  # fmt: skip
    q.add_argument("--dataset", default="cifar10")
    q.add_argument("--variant", default=None, help="cifar10 only: official | jpeg | subset")
    q.add_argument("--data-dir", default=None)
    q.add_argument("--steps", type=int, default=5)
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--lr", type=float, default=0.01)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--runs-dir", default="runs")
    q.add_argument("--out", type=Path, default=Path("gradflow.png"))
    q.add_argument("--json", action="store_true", help="also print the norms as JSON")
    q.set_defaults(handler=_show_gradflow)


def _test_set(trained, data_dir: str | None):
    from .experiment import load_data

    config = trained.config
    if data_dir:
        config.data_dir = data_dir
    return load_data(config)[1]


def _input_image(trained, text: str, data_dir: str | None):
    """(uint8 1 x C x H x W, label for titles, true class or None)."""
    import torch

    from .experiment import read_image

    if text.startswith("test:"):
        test = _test_set(trained, data_dir)
        try:
            index = int(text[5:])
        except ValueError:
            raise CnnlabError(f"{text!r}: expected test:N with a number N") from None
        if not 0 <= index < len(test):
            raise CnnlabError(f"{text}: the test set has images 0..{len(test) - 1}")
        image = torch.as_tensor(test.images[index : index + 1])
        true = int(test.labels[index])
        return image, f"test image {index} (true: {trained.classes[true]})", true
    image, notes = read_image(text, trained.in_channels, trained.input_size)
    for note in notes:
        print(f"note: {text}: {note}")
    return image, Path(text).name, None


def _out(args, trained, stem: str) -> Path:
    """Where a view's PNG goes: ``--out`` (checked now, before the work) or the run's
    ``inspect/`` folder (made only when the figure is written)."""
    if args.out:
        return check_output_file(args.out, "--out", (".png",))
    return trained.run_dir / "inspect" / f"{stem}.png"


def _image_stem(text: str) -> str:
    return text.replace(":", "-") if text.startswith("test:") else Path(text).stem


def _show_featuremaps(args: argparse.Namespace) -> int:
    from .experiment import load_run
    from .inspect.plots import plot_feature_maps
    from .inspect.views import feature_maps, resolve_layer

    trained = load_run(args.run, Path(args.runs_dir))
    for layer in args.layer or []:
        resolve_layer(trained.model, layer)  # unknown names fail before any work
    image, label, _ = _input_image(trained, args.image, args.data_dir)
    maps = feature_maps(trained.model, trained.preprocess(image)[0], args.layer)
    if not maps:
        raise CnnlabError(f"layers {args.layer} give no feature maps (C x H x W outputs)")
    for name, m in maps.items():
        print(f"{name:<24} {'x'.join(map(str, m.shape)):<12} min {float(m.min()):9.4f} "
              f"max {float(m.max()):9.4f} mean {float(m.mean()):9.4f}")  # fmt: skip
    path = _out(args, trained, f"featuremaps-{_image_stem(args.image)}")
    plot_feature_maps(
        maps, path, image=image[0], title=f"feature maps for {label}" if len(maps) > 1 else ""
    )
    _wrote(path)
    return 0


def _show_filters(args: argparse.Namespace) -> int:
    from .experiment import load_run
    from .inspect.plots import plot_filters
    from .inspect.views import filters

    trained = load_run(args.run, Path(args.runs_dir))
    name, weight = filters(trained.model, args.layer)
    print(f"{name}: {weight.shape[0]} filters of {'x'.join(map(str, weight.shape[1:]))}, "
          f"weights from {float(weight.min()):.4f} to {float(weight.max()):.4f}")  # fmt: skip
    path = _out(args, trained, f"filters-{name}")
    plot_filters(weight, path, name)
    _wrote(path)
    return 0


def _class_arg(trained, target: str | None) -> int | None:
    if target is None:
        return None
    if target in trained.classes:
        return trained.classes.index(target)
    try:
        index = int(target)
    except ValueError:
        raise CnnlabError(
            f"--class {target!r}: not a class of this run; classes: {', '.join(trained.classes)}"
        ) from None
    if not 0 <= index < len(trained.classes):
        raise CnnlabError(f"--class {index}: the run has classes 0..{len(trained.classes) - 1}")
    return index


def _show_explanation(args: argparse.Namespace) -> int:
    from .experiment import load_run
    from .inspect.plots import plot_explanation
    from .inspect.views import grad_cam, resolve_layer, saliency

    trained = load_run(args.run, Path(args.runs_dir))
    target = _class_arg(trained, args.target)
    layer = getattr(args, "layer", None)
    if layer:
        resolve_layer(trained.model, layer)
    image, label, _ = _input_image(trained, args.image, args.data_dir)
    x = trained.preprocess(image)[0]
    if args.method == "cam":
        result = grad_cam(trained.model, x, target, layer)
    else:
        result = saliency(trained.model, x, target)
    name = trained.classes[result.class_index]
    where = f" at layer {result.layer}" if result.layer else ""
    print(f"{args.method} for class {name} (p = {result.probability:.2%}){where}")
    path = _out(args, trained, f"{args.method}-{_image_stem(args.image)}-{name}")
    title = f"{args.method} of class '{name}' (p = {result.probability:.1%}){where}: {label}"
    plot_explanation(image[0], result.heatmap, path, title)
    _wrote(path)
    return 0


def _show_mistakes(args: argparse.Namespace) -> int:
    import torch

    from .experiment import load_run
    from .inspect.plots import plot_mistakes
    from .inspect.views import confident_mistakes

    trained = load_run(args.run, Path(args.runs_dir))
    if args.k < 1:
        raise CnnlabError(f"-k {args.k}: expected a positive number")
    test = _test_set(trained, args.data_dir)
    images = torch.as_tensor(test.images)
    mistakes = confident_mistakes(
        trained.model, images, torch.as_tensor(test.labels).long(), args.k, trained.preprocess
    )
    for m in mistakes:
        print(f"test image {m.index:>6}: true {trained.classes[m.true]:<12} predicted "
              f"{trained.classes[m.predicted]:<12} with p = {m.confidence:.2%}")  # fmt: skip
    path = _out(args, trained, "mistakes")
    title = f"{trained.spec['name']}: the {len(mistakes)} most confident mistakes"
    plot_mistakes(images, mistakes, trained.classes, path, title)
    _wrote(path)
    return 0


def _show_run_figure(args: argparse.Namespace) -> int:
    from . import runs
    from .experiment import load_run
    from .inspect.plots import plot_confusion, plot_curves

    trained = load_run(args.run, Path(args.runs_dir))
    path = _out(args, trained, args.figure)
    if args.figure == "curves":
        history = runs.read_metrics(trained.run_dir / runs.METRICS)
        if not history:
            raise CnnlabError(f"{trained.run_dir}: metrics.csv holds no epochs yet")
        for row in history:
            print(
                f"epoch {int(row['epoch']):>3}: train loss {row['train_loss']:.4f} acc "
                f"{row['train_acc']:.2%}   test loss {row['test_loss']:.4f} acc "
                f"{row['test_acc']:.2%}"
            )
        plot_curves(history, path, f"{trained.spec['name']} on {trained.config.dataset}")
    else:
        import torch

        from .data import BatchLoader
        from .train import evaluate

        test = _test_set(trained, args.data_dir)
        loader = BatchLoader(test, 500, shuffle=False)
        _, accuracy, confusion = evaluate(
            trained.model, loader, trained.preprocess, len(test.classes)
        )
        print(f"test accuracy {accuracy:.2%}; rows = true class, columns = predicted")
        print(torch.as_tensor(confusion))
        plot_confusion(confusion, trained.classes, path)
    _wrote(path)
    return 0


def _show_gradflow(args: argparse.Namespace) -> int:
    import torch

    from .data import load_dataset
    from .data.batches import Preprocess
    from .inspect.plots import plot_gradient_flow
    from .inspect.views import gradient_flow
    from .models import create_model, list_models

    if args.steps < 1 or args.batch_size < 1:
        raise CnnlabError("--steps and --batch-size must be positive")
    check_output_file(args.out, "--out", (".png",))
    data = load_dataset(args.dataset, "train", root=args.data_dir, variant=args.variant)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(data), generator=generator)[: args.steps * args.batch_size]
    mean, std = data.channel_stats()
    preprocess = Preprocess(mean, std)
    images = preprocess(torch.as_tensor(data.images[order.numpy()]))
    labels = torch.as_tensor(data.labels[order.numpy()]).long()
    batches = [
        (images[i : i + args.batch_size], labels[i : i + args.batch_size])
        for i in range(0, len(images), args.batch_size)
    ]
    flows = {}
    for text in args.models:
        name, _, option_text = text.partition(":")
        torch.manual_seed(args.seed)
        if name in list_models():
            model = create_model(
                name, num_classes=len(data.classes), in_channels=images.shape[1],
                input_size=images.shape[-1], **_option_dict(option_text),
            )  # fmt: skip
        else:
            from .experiment import load_run

            model = load_run(text, Path(args.runs_dir)).model
        flows[text] = gradient_flow(model, batches, args.steps, args.lr)
        values = [sum(v) / len(v) for v in flows[text].values()]
        print(f"{text}: gradient norm first layer {values[0]:.3g}, last layer {values[-1]:.3g}, "
              f"ratio {values[0] / values[-1]:.3g}")  # fmt: skip
    if args.json:
        print(json.dumps(flows, indent=2))
    plot_gradient_flow(flows, args.out)
    _wrote(args.out)
    return 0


# ----------------------------------------------------------------------------------- filter


def add_filter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "filter", help="apply a classic filter (Sobel, Gaussian, ...) to a photo",
        description="Correlate an image with a classic kernel through cnnlab's own "
        "convolution code, borders handled like scipy.ndimage. Signed responses (edges) are "
        "saved as their magnitude scaled to 0..255.",
    )  # fmt: skip
    p.add_argument("image", nargs="?")
    p.add_argument("--kernel", default="sobel-x")
    p.add_argument(
        "--size", type=int, default=None,
        help="box/gaussian size: odd, 1 to 255, at most the image's shorter side (default 3 "
        "for box, 5 for gaussian)",
    )  # fmt: skip
    p.add_argument(
        "--sigma", type=float, default=None,
        help="gaussian sigma in pixels, > 0 and at most 1000 (default 1); 0 derives it from "
        "--size as OpenCV's getGaussianKernel does",
    )  # fmt: skip
    p.add_argument("--gray", action="store_true", help="convert to gray first")
    p.add_argument(
        "--border", default="reflect",
        help="reflect, mirror, nearest, wrap or constant (scipy.ndimage's names)",
    )  # fmt: skip
    p.add_argument("--convolve", action="store_true", help="true convolution (kernel rotated)")
    p.add_argument("--magnitude", action="store_true", help="Sobel edge magnitude instead")
    p.add_argument("--compare", action="store_true",
                   help="draw correlation vs convolution side by side instead")  # fmt: skip
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--list", action="store_true", help="list the kernels and stop")
    p.set_defaults(handler=_filter)


def _filter(args: argparse.Namespace) -> int:
    import numpy as np

    from .inspect import classic

    if args.list:
        for name in classic.KERNEL_NAMES:
            weights = classic.kernel(name)
            print(f"{name}: {classic.describe(name)}")
            print("  " + classic.kernel_text(weights).replace("\n", "\n  "))
        return 0
    if not args.image:
        raise CnnlabError("give an image: cnnlab filter photo.png --kernel sobel-x")
    # every input is checked before the work, and the output path before anything is read
    if args.size is not None and args.kernel not in ("box", "gaussian"):
        raise CnnlabError(
            f"--size {args.size}: only box and gaussian kernels have a size; {args.kernel!r} is "
            "fixed (see cnnlab filter --list)"
        )
    if args.sigma is not None and args.kernel != "gaussian":
        raise CnnlabError(f"--sigma {args.sigma}: only --kernel gaussian has a sigma")
    if args.size is not None:
        classic.check_size(args.size, "--size")
    if args.border not in classic.BORDERS:
        raise CnnlabError(f"--border {args.border!r}: expected one of {', '.join(classic.BORDERS)}")
    weights = classic.kernel(args.kernel, args.size, args.sigma)
    stem = f"{Path(args.image).stem}-{'magnitude' if args.magnitude else args.kernel}"
    out = args.out or Path(f"{stem}{'-compare' if args.compare else ''}.png")
    check_output_file(out, "--out", (".png",))
    image = classic.load_image(args.image, args.gray)
    classic.check_fits(weights, image)
    print(f"kernel {args.kernel} ({classic.describe(args.kernel)}):")
    print("  " + classic.kernel_text(weights).replace("\n", "\n  "))
    if args.kernel == "gaussian" and args.sigma == 0:
        print(classic.sigma_note(weights.shape[0]))
    if args.compare:
        difference = classic.plot_correlation_vs_convolution(
            image, weights, out, args.kernel, args.border
        )
        symmetric = " (the kernel is symmetric under rotation)" if difference == 0 else ""
        print(f"largest |correlation - convolution| = {difference:.4g}{symmetric}")
        _wrote(out)
        return 0
    if args.magnitude:
        result = classic.edge_magnitude(image, args.border)
        signed = True
    else:
        result = classic.correlate(image, weights, args.border, args.convolve)
        signed = bool((weights < 0).any())
    scaled = ", saved as |response| scaled to 0..255" if signed else ""
    print(
        f"image {'x'.join(map(str, image.shape))}, response from {result.min():.2f} to "
        f"{result.max():.2f}{scaled}"
    )
    classic.save_png(classic.to_uint8(result, signed).astype(np.uint8), out)
    _wrote(out)
    return 0


# ------------------------------------------------------------------------------------ graph


def add_graph(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "graph", help="graph convolutional networks: train and show",
        description="GCNs (Kipf & Welling 2017) on the karate club, Cora, CiteSeer and MUTAG.",
    )  # fmt: skip
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("train", help="train a GCN into a run folder")
    q.add_argument("--dataset", default="cora", help="karate, cora, citeseer or mutag")
    q.add_argument("--data-dir", default=None)
    q.add_argument("--epochs", type=int, default=None, help="at least 1 (default: per data set)")
    q.add_argument("--lr", type=float, default=None,
                   help="Adam's learning rate, finite, in (0, 100] (default: 0.01)")  # fmt: skip
    q.add_argument("--hidden", default=None,
                   help="hidden layer sizes, each 1..65536, e.g. 16 or 4,2")  # fmt: skip
    q.add_argument("--dropout", type=float, default=None, help="0 <= p < 1 (default: 0.5)")
    q.add_argument("--seed", type=int, default=0, help="0..2**32-1")
    q.add_argument("--dense", action="store_true", help="dense adjacency instead of sparse")
    q.add_argument("--runs-dir", default="runs")
    q.add_argument("--name", default=None)
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(handler=_graph_train)
    q = actions.add_parser("show", help="draw the karate club by predicted class and embedding")
    q.add_argument("run", nargs="?", help="a karate run folder (default: train one now)")
    q.add_argument("--data-dir", default=None)
    q.add_argument("--runs-dir", default="runs")
    q.add_argument("--out", type=Path, default=Path("karate.png"))
    q.set_defaults(handler=_graph_show)


def _graph_config(args: argparse.Namespace):
    from .graph import GraphConfig

    overrides: dict[str, Any] = {
        "seed": args.seed, "data_dir": args.data_dir, "progress": not args.no_progress,
        "sparse": not args.dense,
    }  # fmt: skip
    for key in ("epochs", "lr", "dropout"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.hidden is not None:
        try:
            overrides["hidden"] = [int(v) for v in args.hidden.split(",")]
        except ValueError:
            raise CnnlabError(f"--hidden {args.hidden!r}: expected sizes like 16 or 4,2") from None
    return GraphConfig.for_dataset(args.dataset, **overrides)  # checks every value


def _graph_train(args: argparse.Namespace) -> int:
    from .graph import GRAPH_DATASETS, run_graph_training

    if args.dataset not in GRAPH_DATASETS:
        raise CnnlabError(
            f"--dataset {args.dataset!r}: expected one of {', '.join(GRAPH_DATASETS)}"
        )
    config = _graph_config(args)
    run_dir, result = run_graph_training(config, Path(args.runs_dir), args.name, args.overwrite)
    if "mean_acc" in result:
        folds = " ".join(f"{a:.2f}" for a in result["fold_acc"])
        print(f"{args.dataset}: 10-fold test accuracy {result['mean_acc']:.2%} "
              f"+- {result['std_acc']:.2%} (folds: {folds})")  # fmt: skip
    else:
        val = result["val_acc"]
        val_text = f"validation {val:.2%}, " if val == val else ""  # NaN: no validation set
        print(
            f"{args.dataset}: test accuracy {result['test_acc']:.2%} ({val_text}weights of "
            f"epoch {result['best_epoch']} of {result['epochs_run']})"
        )
    print(f"run folder: {run_dir}")
    return 0


def _graph_show(args: argparse.Namespace) -> int:
    import torch

    from . import runs
    from .graph import GraphConfig, load_karate, normalized_adjacency, train_nodes
    from .graph.plots import plot_karate
    from .graph.train import load_node_model

    check_output_file(args.out, "--out", (".png",))
    graph = load_karate(args.data_dir)
    if args.run:
        model, config, _ = load_node_model(runs.resolve_run(args.run, Path(args.runs_dir)))
        if config.dataset != "karate":
            raise CnnlabError(f"{args.run} is a {config.dataset} run; graph show draws karate")
    else:
        config = GraphConfig.for_dataset("karate", data_dir=args.data_dir, progress=False)
        model = train_nodes(graph, config).model
    a_hat = normalized_adjacency(graph.edge_index, graph.num_nodes, config.sparse)
    with torch.no_grad():
        logits = model(graph.x, a_hat)
    if model.embedding is None or model.embedding.shape[1] != 2:
        raise CnnlabError(
            f"the model's last hidden layer has {getattr(model.embedding, 'shape', ['?', '?'])[1]} "
            "units; train with --hidden ending in 2 (e.g. 4,2) to draw a 2-D embedding"
        )
    predicted = logits.argmax(1)
    test = graph.test_mask
    accuracy = float((predicted[test] == graph.y[test]).float().mean())
    print(f"karate: {accuracy:.2%} of the {int(test.sum())} unlabelled members placed in the "
          f"right club from {int(graph.train_mask.sum())} labelled ones")  # fmt: skip
    title = f"GCN on Zachary's karate club: {accuracy:.0%} of unlabelled members right"
    plot_karate(graph, predicted, model.embedding, args.out, title)
    _wrote(args.out)
    return 0


# --------------------------------------------------------------------------------- transfer


def add_transfer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer", help="train a pretrained network on a new data set",
        description="Replace the source network's head and train on --dataset with a transfer "
        "strategy: feature-extract (only the head learns), fine-tune-last:K (the last K blocks "
        "too), full (everything, the pretrained layers at --backbone-lr-factor x lr), or auto "
        "(the four-quadrant rule; say --different if the data is unlike the source's). Every "
        "option is checked before the source or the data is loaded.",
    )  # fmt: skip
    p.add_argument("--from", dest="source", required=True,
                   help="a run folder, or torchvision:NAME for ImageNet weights")  # fmt: skip
    p.add_argument("--dataset", required=True)
    p.add_argument("--strategy", default="auto")
    p.add_argument("--different", action="store_true", help="target unlike the source (auto)")
    p.add_argument(
        "--backbone-lr-factor", type=float, default=None, metavar="F",
        help="--strategy full: the pretrained layers train at F x --lr, 0 < F <= 1 (default "
        "0.1); to keep them fixed use feature-extract or fine-tune-last:K instead of F=0",
    )  # fmt: skip
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--data-variant", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--name", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_transfer)


def _transfer(args: argparse.Namespace) -> int:
    from .experiment import load_data, transfer_run
    from .runs import plan_run_dir
    from .train import TrainConfig
    from .transfer import Strategy, advise, check_backbone_lr_factor

    # every option first: nothing is loaded, trained or written for a run that cannot start
    config = TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, data_variant=args.data_variant,
        train_subset=args.train_subset, test_subset=args.test_subset, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip
    given_factor = args.backbone_lr_factor is not None
    factor = check_backbone_lr_factor(args.backbone_lr_factor if given_factor else 0.1)
    strategy = args.strategy
    if strategy != "auto":
        Strategy.parse(strategy)
    plan_run_dir(Path(args.runs_dir), args.name, "transfer", args.overwrite)  # creates nothing
    if strategy == "auto":
        train, _ = load_data(config)
        chosen, why = advise(len(train), train.num_classes, similar=not args.different)
        strategy = str(chosen)
        print(f"strategy {strategy}: {why}")
    if given_factor and Strategy.parse(strategy).kind != "full":
        print(f"note: --backbone-lr-factor applies to --strategy full only; {strategy} trains "
              "its unfrozen layers at --lr")  # fmt: skip
    result, report = transfer_run(
        args.source, config, strategy, factor, Path(args.runs_dir), args.name, args.overwrite
    )
    trained = ", ".join(report["trained_blocks"]) or "none"
    print(f"{report['strategy']}: training {report['trainable_params']:,} of "
          f"{report['total_params']:,} parameters (new head {report['head']}; backbone blocks "
          f"trained: {trained})")  # fmt: skip
    print(f"test accuracy: {result.history[-1]['test_acc']:.2%}")
    print(f"run folder: {result.run_dir}")
    return 0


# -------------------------------------------------------------------------------- reproduce


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce", help="rerun the classic experiments against their published figures",
        description="Train LeNet-5 on MNIST, the Fashion-MNIST MLP and CNN, and the three "
        "CIFAR-10 stacks, and write a Markdown table of reference vs cnnlab figures. --quick "
        "(subsets, fewer epochs) takes a few minutes on 2 CPU cores; the full run is for a GPU.",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", help="experiment key (repeat); default: all")
    p.add_argument("--out", type=Path, default=Path("reproduce.md"))
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import EXPERIMENTS, run, write_report

    keys = [e.key for e in EXPERIMENTS]
    unknown = [k for k in args.only or [] if k not in keys]
    if unknown:
        raise CnnlabError(f"--only {unknown[0]!r}: experiments are {', '.join(keys)}")
    check_output_file(args.out, "--out", (".md",))  # before minutes of training
    rows = run(args.quick, Path(args.runs_dir), args.data_dir, args.only)
    print(write_report(rows, args.quick, args.out))
    _wrote(args.out)
    return 0


# ------------------------------------------------------------------------------------ serve


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="open trained runs in the browser (the cnnlab explorer)",
        description="Start the explorer on 127.0.0.1: draw or upload an image, see the "
        "prediction, every layer's feature maps, the arithmetic of any output pixel, Grad-CAM "
        "and the layer table; /docs describes its JSON API. RUN: run folders (default: every "
        "run under --runs-dir); runs it cannot show (graph runs) are skipped with a notice.",
    )  # fmt: skip
    p.add_argument("runs", nargs="*")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000,
                   help="1-65535, or 0 for any free port (the address is printed)")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="for test-set samples")
    p.set_defaults(handler=_serve)


def serve_runs(names: list[str], runs_dir: Path) -> list[Path]:
    """The run folders to serve: ``names`` (paths or names under ``runs_dir``), or every folder
    under ``runs_dir`` that holds a checkpoint (the explorer skips those it cannot show)."""
    from . import runs
    from .runs import resolve_run

    if names:
        return [resolve_run(name, runs_dir) for name in names]
    found = sorted(p.parent for p in runs_dir.glob(f"*/{runs.CHECKPOINT}"))
    if not found:
        raise CnnlabError(f"no trained runs under {runs_dir}; train one with `cnnlab train`")
    return found


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn, so a port in use (or a host that is not
    this machine's) is one line here instead of uvicorn's text and exit code 3."""
    if not 0 <= port <= 65535:
        raise CnnlabError(f"--port {port}: expected 1-65535 (or 0 for any free port)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind((host, port))
    except (OSError, UnicodeError) as error:
        sock.close()
        if isinstance(error, (socket.gaierror, UnicodeError)):
            why = (f"--host {host!r}: not a host name or address of this machine; the "
                   "explorer is meant for 127.0.0.1 (the default)")  # fmt: skip
        elif error.errno == errno.EADDRINUSE:
            other = port + 1 if port < 65535 else 8000
            why = (f"--port {port}: port {port} on {host} is already in use (another server?); "
                   f"stop that server or pick another, e.g. --port {other}, or --port 0 for any "
                   "free port")  # fmt: skip
        elif error.errno == errno.EACCES:
            why = f"--port {port}: not allowed to listen on it here; use a port above 1023"
        else:
            why = f"--host {host} --port {port}: cannot listen there ({error.strerror})"
        raise CnnlabError(why) from None
    return sock


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .explorer import create_app

    sock = _listening_socket(args.host, args.port)  # first: nothing else is done for a bad one
    try:
        app = create_app(serve_runs(args.runs, Path(args.runs_dir)), args.data_dir)
        for line in app.state.skipped:
            print(f"skipping run {line}")
        if args.host not in ("127.0.0.1", "localhost"):
            print(f"warning: serving on {args.host}: other machines can reach this server")
        host, port = sock.getsockname()[:2]
        print(f"cnnlab explorer: http://{args.host}:{port}/  (API: /docs; Ctrl+C stops it)")
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0
