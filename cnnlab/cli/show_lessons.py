"""``cnnlab show top-activations|robustness|translation|learned-filters``: the course's
"seeing inside" lessons on a trained run (or any model, see SOURCE): the test images that
excite each channel most, LeNet's robustness demo, translation equivariance layer by layer,
and learned first-layer filters beside the classic ones."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import CnnlabError
from ..outputs import check_output_file, view_output
from ._options import add_view_arguments, input_image, load_any, wrote

MATCH_HELP = (
    "Method: each learned filter is averaged over its input channels; each classic kernel "
    "(Sobel-x/y, Laplacian, Gaussian, sharpen, emboss) is resized to the learned size "
    "(bilinear, corners aligned); both lose their mean and are scaled to unit length; their "
    "dot product is the normalized correlation r (-1..1). The classic filter with the largest "
    "|r| is named: -Sobel-x finds the same edges with the opposite sign."
)


def add_lesson_views(views: argparse._SubParsersAction) -> None:
    """Declare the sub-commands on ``cnnlab show``'s sub-parsers."""

    def common(q: argparse.ArgumentParser, image: bool) -> None:
        out_help = "PNG to write (default: RUN/inspect/VIEW-....png)"
        add_view_arguments(q, image, True, out_help, "data folder for the run's test set")

    q = views.add_parser(
        "top-activations",
        help="the test images that excite each channel of a layer most (Zeiler & Fergus)",
        description="Run the run's test images through the model and, for each channel of "
        "--layer, show the images whose strongest activation is largest, with the receptive "
        "field of that activation (found by autograd) boxed in red.",
    )
    common(q, False)
    q.add_argument("--layer", required=True, help="layer name as in `cnnlab summary`")
    q.add_argument("--per-channel", type=int, default=6, help="images per channel")
    q.add_argument("--channels", type=int, default=12, help="the first N channels")
    q.add_argument("--images", type=int, default=1000, help="test images searched")
    q.add_argument(
        "--patches", action="store_true", help="show only the patch under the receptive field"
    )
    q.set_defaults(handler=_show_top_activations)

    q = views.add_parser(
        "robustness",
        help="prediction under noise, shifts, rotation and elastic distortion, in steps",
        description="LeNet's demo: change the image step by step (Gaussian noise, a shift, a "
        "rotation, an elastic distortion) and plot the prediction and its probability; the "
        "feature maps of the worst case go to a second PNG (...-worst.png).",
    )
    common(q, True)
    q.add_argument("--steps", type=int, default=6, help="levels per perturbation (2..6)")
    q.add_argument("--noise-seed", type=int, default=0)
    q.set_defaults(handler=_show_robustness)

    q = views.add_parser(
        "translation",
        help="shift the input by k pixels: do the feature maps shift by k? (until pooling)",
        description="Shift the image --shift pixels to the right and compare every layer's "
        "maps before and after: the whole-cell shift that fits best and the relative error "
        "left (0 = equivariant), on the centre of the maps, away from the zero padding. "
        "Convolutions keep the shift; a stride or pooling of 2 turns k pixels into k/2 cells, "
        "exact only when k is a multiple of 2.",
    )
    common(q, True)
    q.add_argument("--shift", type=int, default=1, help="pixels to the right")
    q.set_defaults(handler=_show_translation)

    q = views.add_parser(
        "learned-filters",
        help="first-layer filters of a trained run beside Sobel, Gaussian, Laplacian, ...",
        description="Each filter of the first convolution (or --layer) beside the classic "
        f"filter it resembles most. {MATCH_HELP}",
    )
    common(q, False)
    q.add_argument("--layer", default=None, help="a convolution (default: the first)")
    q.set_defaults(handler=_show_learned_filters)


def _out(args: argparse.Namespace, source, stem: str) -> Path:
    fallback = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{args.run}-{stem}") + ".png"
    return view_output(args.out, source.run_dir, fallback, stem)


def _image(source, text: str, data_dir: str | None, squash: bool = False):
    """(uint8 C x H x W, a label for titles, a file-name stem)."""
    image, label, _, stem = input_image(source, text, data_dir, squash)
    return image[0], label, stem


def _show_top_activations(args: argparse.Namespace) -> int:
    from ..inspect.hooks import resolve_layer
    from ..inspect.lesson_plots import plot_top_activations
    from ..inspect.probes import top_activations

    for name, value in (
        ("--per-channel", args.per_channel),
        ("--channels", args.channels),
        ("--images", args.images),
    ):
        if value < 1:
            raise CnnlabError(f"{name} {value}: expected a positive number")
    source = load_any(args)
    if source.run_dir is None:
        raise CnnlabError(
            f"{args.run}: top-activations searches a run's test images, and this is not a run; "
            "give a run folder (train one with `cnnlab train`)"
        )
    resolve_layer(source.model, args.layer)
    path = _out(args, source, f"top-activations-{args.layer}")
    test = source.test_split(args.data_dir)
    images, labels = test.images[: args.images], test.labels[: args.images]
    tops = top_activations(
        source.model, images, source.preprocess, args.layer, args.per_channel, args.channels
    )
    print(
        f"{args.layer}: the {args.per_channel} of {len(images)} test images that excite each "
        "channel most (image: activation, class)"
    )
    for row in tops:
        classes = [source.classes[int(labels[t.index])] for t in row]
        common = max(set(classes), key=classes.count)
        y0, x0, y1, x1 = row[0].box
        print(
            f"channel {row[0].channel:>3}: "
            + ", ".join(f"#{t.index} {t.value:.2f} {c}" for t, c in zip(row, classes))
            + f"  | mostly {common} ({classes.count(common)}/{len(row)}), "
            f"field {y1 - y0}x{x1 - x0}"
        )
    plot_top_activations(images, labels, tops, source.classes, path, args.layer, args.patches)
    return wrote(path)


def _show_robustness(args: argparse.Namespace) -> int:
    from ..inspect.lesson_plots import plot_robustness
    from ..inspect.plots import plot_feature_maps
    from ..inspect.probes import DEFAULT_LEVELS, UNITS, robustness
    from ..inspect.views import feature_maps

    if not 2 <= args.steps <= 6:
        raise CnnlabError(f"--steps {args.steps}: expected 2 .. 6 levels per perturbation")
    source = load_any(args)
    image, label, stem = _image(source, args.image, args.data_dir, args.squash)
    path = _out(args, source, f"robustness-{stem}")
    worst_path = path.with_name(path.stem + "-worst.png")
    if args.out:  # the default folder was checked by _out (and may not exist yet)
        check_output_file(worst_path, "--out", (".png",))
    levels = {kind: values[: args.steps] for kind, values in DEFAULT_LEVELS.items()}
    steps = robustness(source.model, source.preprocess, image, levels, args.noise_seed)
    original = steps[0].predicted
    print(f"{label}: predicted {source.classes[original]} with p = {steps[0].confidence:.2%}")
    for step in steps:
        mark = "" if step.predicted == original else "  <- changed"
        print(
            f"{step.kind:<9} {step.level:>5g} {UNITS[step.kind]:<24} predicted "
            f"{source.classes[step.predicted]:<12} p = {step.confidence:6.2%}  "
            f"p({source.classes[original]}) = {step.reference:6.2%}{mark}"
        )
    worst = min(steps, key=lambda s: s.reference)
    print(
        f"worst case: {worst.kind} {worst.level:g} ({UNITS[worst.kind]}), "
        f"p({source.classes[original]}) = {worst.reference:.2%}"
    )
    plot_robustness(steps, source.classes, path, UNITS)
    maps = feature_maps(source.model, source.preprocess(worst.image[None])[0])
    plot_feature_maps(
        maps,
        worst_path,
        image=worst.image,
        title=f"feature maps of the worst "
        f"case: {worst.kind} {worst.level:g}, said {source.classes[worst.predicted]}",
    )
    print(f"wrote {worst_path}")
    return wrote(path)


def _show_translation(args: argparse.Namespace) -> int:
    from ..inspect.lesson_plots import plot_translation
    from ..inspect.probes import shift_image, translation
    from ..inspect.views import feature_maps

    source = load_any(args)
    image, label, stem = _image(source, args.image, args.data_dir, args.squash)
    path = _out(args, source, f"translation-{stem}-{args.shift}")
    layers, before, after = translation(source.model, source.preprocess, image, args.shift)
    print(f"{label} shifted {args.shift} pixels right; each layer's maps against the original:")
    broken = None
    for layer in layers:
        exact = layer.error < 0.05
        if not exact and broken is None:
            broken = layer.name
        print(
            f"{layer.name:<24} {'x'.join(map(str, layer.shape)):<10} best shift "
            f"{layer.cells} cells, error {layer.error:.3f}  "
            f"{'equivariant' if exact else 'breaks: the maps no longer just shift'}"
        )
    print(f"equivariance breaks first at: {broken or 'no layer'}")
    old, new = int(before.argmax()), int(after.argmax())
    held = "holds" if old == new else "changes"
    print(
        f"prediction {held}: {source.classes[old]} (p = {float(before[old]):.2%}) -> "
        f"{source.classes[new]} (p = {float(after[new]):.2%})"
    )
    shifted = shift_image(image, args.shift)
    layers = [layer for layer in layers if layer.shape[-1] > 1]  # 1x1 maps show nothing
    names = [layer.name for layer in layers]
    maps_before = feature_maps(source.model, source.preprocess(image[None])[0], names)
    maps_after = feature_maps(source.model, source.preprocess(shifted[None])[0], names)
    plot_translation(image, shifted, layers, maps_before, maps_after, path, args.shift)
    return wrote(path)


def _show_learned_filters(args: argparse.Namespace) -> int:
    from ..inspect.filter_match import classic_bank, match_filters
    from ..inspect.lesson_plots import plot_filter_matches
    from ..inspect.views import filters

    source = load_any(args)
    name, weight = filters(source.model, args.layer)
    path = _out(args, source, f"learned-filters-{name}")
    matches = match_filters(weight[:32])
    print(
        f"{name}: {weight.shape[0]} filters of {'x'.join(map(str, weight.shape[1:]))}"
        f"{', first 32 shown' if weight.shape[0] > 32 else ''}; nearest classic filter by "
        "|normalized correlation| after resizing to the learned size"
    )
    for match in matches:
        others = sorted(match.all_correlations.items(), key=lambda kv: -abs(kv[1]))[1:3]
        print(
            f"filter {match.index:>3}: {match.nearest:<10} r = {match.correlation:+.3f}   "
            f"next: " + ", ".join(f"{n} {r:+.2f}" for n, r in others)
        )
    plot_filter_matches(matches, classic_bank(weight.shape[-1]), path, name)
    return wrote(path)
