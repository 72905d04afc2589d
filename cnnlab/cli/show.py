"""``cnnlab show VIEW``: pictures of a trained run (feature maps, filters, Grad-CAM,
saliency, mistakes, curves, confusion), the first four also of any model
(:func:`cnnlab.runs.sources.load_source`), and the gradient flow of models side by side."""

from __future__ import annotations

import argparse
import difflib
import json
import re
from pathlib import Path

from ..errors import CnnlabError
from ..outputs import check_output_file, view_output
from ._options import (
    add_data_options,
    add_out_option,
    add_run_options,
    add_view_arguments,
    input_image,
    load_any,
    option_dict,
    wrote,
)

MAX_DEFAULT_CONVS = 12


def add_show(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    p = sub.add_parser(
        "show",
        help="pictures of a trained run or any model: feature maps, filters, Grad-CAM, ...",
        description="Draw a view of a trained run as a PNG (default: RUN/inspect/...); "
        "featuremaps, filters, cam and saliency also take any model (see their --help).",
    )
    views = p.add_subparsers(dest="view", required=True, metavar="VIEW")

    def common(q, image: bool, any_model: bool = False) -> None:
        add_view_arguments(q, image, any_model)

    q = views.add_parser(
        "featuremaps",
        help="feature maps of one layer or of every layer",
        description="Feature maps of the named layers; default: every layer of a run, or up to "
        f"{MAX_DEFAULT_CONVS} convolutions, evenly spread, of any other model.",
    )
    common(q, True, True)
    q.add_argument("--layer", action="append", help="layer name as in `cnnlab summary` (repeat)")
    q.set_defaults(handler=_show_featuremaps)
    q = views.add_parser("filters", help="a convolution's filters (the first by default)")
    common(q, False, True)
    q.add_argument("--layer", default=None)
    q.set_defaults(handler=_show_filters)
    for name, helptext in (("cam", "Grad-CAM heat map"), ("saliency", "input-gradient saliency")):
        q = views.add_parser(name, help=f"{helptext} for a class, over the image")
        common(q, True, True)
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
        "gradflow",
        help="per-layer gradient norms of models side by side",
        description="Train each model a few steps on real data and plot every weight's "
        "gradient norm, input to output, and the share of each ReLU layer's units left dead "
        "(0 for every image). Default: an 18-convolution plain stack against its residual "
        "twin. MODEL: name[:key=value,...] or a run folder; the key init=torch|keras|"
        "normal-0.01 picks the initial weights (keras: glorot-uniform, zero biases).",
        epilog="example: cnnlab show gradflow cifar_plain7:init=torch cifar_plain7:init=keras "
        "--optimizer adam --lr 0.001 --adam-eps 1e-7 --input-scaling unit --steps 60",
    )
    q.add_argument(
        "models", nargs="*", default=["cifar_residual:pairs=8,skip=false", "cifar_residual:pairs=8"]
    )
    q.add_argument("--dataset", default="cifar10")
    q.add_argument("--variant", default=None, help="cifar10 only: official | jpeg | subset")
    add_data_options(q)
    q.add_argument("--steps", type=int, default=5)
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--lr", type=float, default=0.01)
    q.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    q.add_argument("--adam-eps", type=float, default=1e-8, help="Keras: 1e-7 (default: 1e-8)")
    q.add_argument(
        "--input-scaling",
        choices=("none", "unit", "standard"),
        default="standard",
        help="for model names (a run keeps its own): unit: x / 255 as Keras and ToTensor(); "
        "standard: per-channel mean/std of the images (default); none: the raw 0..255",
    )
    q.add_argument("--seed", type=int, default=0)
    add_run_options(q)
    add_out_option(q, Path("gradflow.png"))
    q.add_argument(
        "--json", action="store_true", help="also print the norms and dead shares as JSON"
    )
    q.set_defaults(handler=_show_gradflow)
    q = views.add_parser(
        "augmentations",
        help="AlexNet's augmentation: a grid of random crops, flips and PCA colour shifts",
        description="Resize to 256 (shorter side, central square), then random 224 crops, "
        "flips and fancy PCA colour (eigenvectors/eigenvalues of the RGB covariance, alpha ~ "
        "N(0, 0.1)) of a photo (N versions) or of a data set's first N training images.",
        epilog="example: cnnlab show augmentations chelsea.png --n 16 --pca-std 1",
    )
    q.add_argument("source", metavar="DATASET_OR_IMAGE", help="a .png/.jpg file or a data set")
    q.add_argument("--n", type=int, default=16, help="samples to draw, 1..64")
    q.add_argument("--resize", type=int, default=256, help="shorter side before cropping")
    q.add_argument("--crop", type=int, default=224, help="side of the random crops")
    q.add_argument("--pca-std", type=float, default=0.1, help="std of alpha (0: no colour)")
    q.add_argument("--no-flip", action="store_true", help="no random flips")
    q.add_argument("--seed", type=int, default=0)
    add_data_options(q)
    add_out_option(q, Path("augmentations.png"))
    q.set_defaults(handler=_show_augmentations)
    return views  # more views are added by cli/__init__.py (show_lessons, show_pictures)


def _input_image(trained, text: str, data_dir: str | None, squash: bool = False):
    """(uint8 1 x C x H x W, label for titles, true class or None)."""
    image, label, true, _ = input_image(trained, text, data_dir, squash)
    return image, label, true


def _out(args, trained, stem: str) -> Path:
    """Where a view's PNG goes: ``--out`` (checked now, before the work), else the run's
    ``inspect/`` folder (made only when the figure is written), else for any other model
    ``SOURCE-VIEW-IMAGE.png`` in the current folder."""
    fallback = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{args.run}-{stem}") + ".png"
    return view_output(args.out, getattr(trained, "run_dir", None), fallback, stem)


def _image_stem(text: str) -> str:
    return text.replace(":", "-") if text.startswith("test:") else Path(text).stem


def _show_featuremaps(args: argparse.Namespace) -> int:
    from ..inspect.hooks import conv_layers, resolve_layer
    from ..inspect.plots import plot_feature_maps
    from ..inspect.views import feature_maps

    trained = load_any(args)
    for layer in args.layer or []:
        resolve_layer(trained.model, layer)  # unknown names fail before any work
    image, label, _ = _input_image(trained, args.image, args.data_dir, args.squash)
    path = _out(args, trained, f"featuremaps-{_image_stem(args.image)}")
    layers = args.layer
    if not layers and trained.run is None:  # every layer of VGG-16 at 224: 32 rows of maps
        convs = conv_layers(trained.model)
        step = max(1, -(-len(convs) // MAX_DEFAULT_CONVS))
        layers = convs[::step]
        if convs and len(layers) < len(convs):
            print(
                f"note: {len(layers)} of {len(convs)} convolutions shown; name others with --layer"
            )
    maps = feature_maps(trained.model, trained.preprocess(image)[0], layers)
    if not maps:
        raise CnnlabError(f"layers {args.layer} give no feature maps (C x H x W outputs)")
    for name, m in maps.items():
        print(
            f"{name:<24} {'x'.join(map(str, m.shape)):<12} min {float(m.min()):9.4f} "
            f"max {float(m.max()):9.4f} mean {float(m.mean()):9.4f}"
        )
    plot_feature_maps(
        maps, path, image=image[0], title=f"feature maps for {label}" if len(maps) > 1 else ""
    )
    return wrote(path)


def _show_filters(args: argparse.Namespace) -> int:
    from ..inspect.plots import plot_filters
    from ..inspect.views import filters

    trained = load_any(args)
    name, weight = filters(trained.model, args.layer)
    path = _out(args, trained, f"filters-{name}")  # checked before anything is said or drawn
    print(
        f"{name}: {weight.shape[0]} filters of {'x'.join(map(str, weight.shape[1:]))}, "
        f"weights from {float(weight.min()):.4f} to {float(weight.max()):.4f}"
    )
    plot_filters(weight, path, name)
    return wrote(path)


def _class_arg(trained, target: str | None) -> int | None:
    if target is None:
        return None
    if target in trained.classes:
        return trained.classes.index(target)
    what = "run" if trained.run is not None else "model"
    try:
        index = int(target)
    except ValueError:
        raise CnnlabError(
            f"--class {target!r}: not a class of this {what}; classes: "
            f"{', '.join(trained.classes[:20])}{', ...' if len(trained.classes) > 20 else ''}"
        ) from None
    if not 0 <= index < len(trained.classes):
        raise CnnlabError(f"--class {index}: the {what} has classes 0..{len(trained.classes) - 1}")
    return index


def _show_explanation(args: argparse.Namespace) -> int:
    from ..inspect.explain import grad_cam, saliency
    from ..inspect.hooks import resolve_layer
    from ..inspect.plots import plot_explanation

    trained = load_any(args)
    target = _class_arg(trained, args.target)
    layer = getattr(args, "layer", None)
    if layer:
        resolve_layer(trained.model, layer)
    image, label, _ = _input_image(trained, args.image, args.data_dir, args.squash)
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
    return wrote(path)


def _show_mistakes(args: argparse.Namespace) -> int:
    import torch

    from ..inspect.plots import plot_mistakes
    from ..inspect.views import confident_mistakes
    from ..runs.load import load_run

    trained = load_run(args.run, Path(args.runs_dir))
    if args.k < 1:
        raise CnnlabError(f"-k {args.k}: expected a positive number")
    test = trained.test_split(args.data_dir)
    images = torch.as_tensor(test.images)
    mistakes = confident_mistakes(
        trained.model, images, torch.as_tensor(test.labels).long(), args.k, trained.preprocess
    )
    for m in mistakes:
        print(
            f"test image {m.index:>6}: true {trained.classes[m.true]:<12} predicted "
            f"{trained.classes[m.predicted]:<12} with p = {m.confidence:.2%}"
        )
    path = _out(args, trained, "mistakes")
    title = f"{trained.spec['name']}: the {len(mistakes)} most confident mistakes"
    plot_mistakes(images, mistakes, trained.classes, path, title)
    return wrote(path)


def _show_run_figure(args: argparse.Namespace) -> int:
    from .. import run_folder
    from ..inspect.plots import plot_confusion, plot_curves
    from ..runs.load import load_run

    trained = load_run(args.run, Path(args.runs_dir))
    path = _out(args, trained, args.figure)
    if args.figure == "curves":
        history = run_folder.read_metrics(trained.run_dir / run_folder.METRICS)
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

        from ..data import BatchLoader
        from ..train.steps import evaluate

        test = trained.test_split(args.data_dir)
        loader = BatchLoader(test, 500, shuffle=False)
        _, accuracy, confusion = evaluate(
            trained.model, loader, trained.preprocess, len(test.classes)
        )
        print(f"test accuracy {accuracy:.2%}; rows = true class, columns = predicted")
        print(torch.as_tensor(confusion))
        plot_confusion(confusion, trained.classes, path)
    return wrote(path)


def _show_gradflow(args: argparse.Namespace) -> int:
    import torch

    from ..data import load_dataset
    from ..data.batches import Preprocess, scaling_stats
    from ..inspect.plots import plot_gradient_flow
    from ..inspect.views import dead_relus, gradient_flow
    from ..train.config import LR_MAX
    from ..train.options import real

    if args.steps < 1 or args.batch_size < 1:
        raise CnnlabError("--steps and --batch-size must be positive")
    if not real(0, LR_MAX, open_low=True)(args.lr, None):  # the range train --lr takes
        raise CnnlabError(
            f"--lr {args.lr}: expected a finite number in (0, {LR_MAX}], e.g. 0.001 for "
            "--optimizer adam, 0.01 for sgd"
        )
    if not real(0, 1, open_low=True)(args.adam_eps, None):  # as train --adam-eps
        raise CnnlabError(
            f"--adam-eps {args.adam_eps}: expected a small positive number (PyTorch 1e-8, "
            "Keras 1e-7)"
        )
    check_output_file(args.out, "--out", (".png",))
    data = load_dataset(args.dataset, "train", root=args.data_dir, variant=args.variant)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(data), generator=generator)[: args.steps * args.batch_size]
    raw = torch.as_tensor(data.images[order.numpy()])
    labels = torch.as_tensor(data.labels[order.numpy()]).long()
    scaled = Preprocess(*scaling_stats(data, args.input_scaling))
    flows, dead = {}, {}
    for text in args.models:
        model, preprocess = _gradflow_model(text, args, data, scaled)
        images = preprocess(raw)
        batches = [
            (images[i : i + args.batch_size], labels[i : i + args.batch_size])
            for i in range(0, len(images), args.batch_size)
        ]
        flows[text] = gradient_flow(
            model, batches, args.steps, args.lr, args.optimizer, args.adam_eps
        )
        values = [sum(v) / len(v) for v in flows[text].values()]
        ratio = f"{values[0] / values[-1]:.3g}" if values[-1] else "- (no gradient at the last)"
        print(
            f"{text}: gradient norm first layer {values[0]:.3g}, last layer {values[-1]:.3g}, "
            f"ratio {ratio}"
        )
        if any(isinstance(m, torch.nn.ReLU) for m in model.modules()):
            dead[text] = dead_relus(model, images[:256])
            shares = ", ".join(f"{name} {share:.0%}" for name, share in dead[text].items())
            print(
                f"  dead ReLU units after {len(batches)} step(s) (0 for all "
                f"{min(len(images), 256)} images): {shares}"
            )
    if args.json:
        print(json.dumps({"gradient_norms": flows, "dead_relus": dead}, indent=2))
    plot_gradient_flow(flows, args.out, dead)
    return wrote(args.out)


def _gradflow_model(text: str, args: argparse.Namespace, data, scaled):
    """The model a ``gradflow`` MODEL names and the preprocessing its images get: a registered
    name with its options (``init=`` picks the initial weights, seeded by --seed) reads the
    images as --input-scaling says (``scaled``); a run folder is taken as trained, with the
    scaling it was trained with."""
    import torch

    from ..models import create_model, list_models
    from ..models.init import INIT_SCHEMES, initialize

    torch.manual_seed(args.seed)
    name, _, option_text = text.partition(":")
    if name not in list_models():
        from ..runs.load import load_run

        if option_text and not Path(text).exists():
            close = difflib.get_close_matches(name, list_models(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise CnnlabError(
                f"{text!r}: {name!r} is not a model name (`cnnlab models` lists them) and "
                f"options such as init= apply to model names only.{hint}"
            )

        trained = load_run(text, Path(args.runs_dir))
        return trained.model, trained.preprocess
    options = option_dict(option_text)
    init = str(options.pop("init", "torch"))
    if init not in INIT_SCHEMES:
        raise CnnlabError(
            f"{text!r}: init={init} is not an initialisation; expected init= one of "
            f"{', '.join(INIT_SCHEMES)}"
        )
    model = create_model(
        name,
        num_classes=len(data.classes),
        in_channels=data.channels,
        input_size=data.image_size,
        **options,
    )
    initialize(model, init)
    return model, scaled


def _show_augmentations(args: argparse.Namespace) -> int:
    from ..inspect.augment_view import augmented_samples, plot_augmented

    check_output_file(args.out, "--out", (".png",))
    options = dict(resize=args.resize, crop=args.crop, flip=not args.no_flip, seed=args.seed)
    result = augmented_samples(args.source, args.n, args.data_dir, pca_std=args.pca_std, **options)
    if result.basis is not None:
        print("\n".join(result.basis.lines()))
    plot_augmented(result, args.out)
    return wrote(args.out)
