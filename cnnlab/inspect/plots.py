"""Figures of a run: learning curves, the confusion matrix and the views of a model, written
as PNG files.

Every figure is a :class:`matplotlib.figure.Figure` drawn without ``pyplot``: nothing here
chooses a backend or registers a window, so importing cnnlab leaves a notebook's matplotlib
as it was. :func:`save_figure` writes any of them (graph and image-filter figures too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from ..run_folder import atomic_write


def subplots(rows: int = 1, cols: int = 1, figsize: tuple[float, float] | None = None, **options):
    """``pyplot.subplots`` without pyplot: a new :class:`~matplotlib.figure.Figure` of
    ``figsize`` inches and its grid of axes (``options`` go to ``Figure.subplots``:
    ``squeeze``, ``sharey``, ...)."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(rows, cols, **options)


def save_figure(figure: Figure, path: Path, dpi: int = 110) -> None:
    """Write ``figure`` as a PNG at ``path``, atomically (a reader never sees half a file),
    making its folder (a run's ``inspect/``) on first use."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), lambda handle: figure.savefig(handle, format="png", dpi=dpi))


def plot_curves(history: list[dict[str, float]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train against test (and validation, when the rows have
    ``val_loss``/``val_acc``: a run with ``--val-split``), side by side."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, acc_axes) = subplots(1, 2, figsize=(10, 4))
    splits = [("train", "-o"), ("val", "-.^"), ("test", "--s")]
    for split, style in [s for s in splits if f"{s[0]}_acc" in history[0]]:
        loss_axes.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        acc_axes.plot(epochs, [100 * r[f"{split}_acc"] for r in history], style, label=split)
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    last = history[-1]
    acc_axes.annotate(
        f"test {100 * last['test_acc']:.2f}%",
        (last["epoch"], 100 * last["test_acc"]),
        textcoords="offset points",
        xytext=(-60, -18),
    )
    for axes in (loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def plot_confusion(confusion: torch.Tensor, classes: list[str], path: Path) -> None:
    """Counts of (true class, predicted class); the diagonal holds the correct predictions."""
    matrix = confusion.numpy()
    size = max(5.0, 0.55 * len(classes) + 2)
    figure, axes = subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    axes.set(xlabel="predicted class", ylabel="true class")
    accuracy = matrix.trace() / max(matrix.sum(), 1)
    axes.set_title(f"confusion matrix: {matrix.trace()} of {matrix.sum()} right ({accuracy:.2%})")
    threshold = matrix.max() / 2
    if len(classes) <= 20:
        for row in range(len(classes)):
            for col in range(len(classes)):
                axes.text(
                    col,
                    row,
                    str(matrix[row, col]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[row, col] > threshold else "black",
                )
    figure.tight_layout()
    save_figure(figure, path)


# ------------------------------------------------------------------------- views of a model


def image_array(image: torch.Tensor):
    """uint8 ``C x H x W`` (or float in [0, 1]) -> what ``imshow`` takes: ``H x W`` or
    ``H x W x 3``."""
    array = image.detach().cpu()
    if array.dtype != torch.uint8:
        array = (array.clamp(0, 1) * 255).to(torch.uint8)
    array = array.permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


def _grid(count: int, columns: int | None = None) -> tuple[int, int]:
    columns = columns or max(1, min(count, int(count**0.5 + 0.999)))
    return -(-count // columns), columns


def plot_feature_maps(
    maps: dict[str, torch.Tensor],
    path: Path,
    image: torch.Tensor | None = None,
    max_channels: int = 64,
    title: str = "",
) -> None:
    """One layer: a grid of its channels. Several: one row per layer, up to 16 channels each.
    Each map is scaled to its own range (the colour bar is per map: dark = low)."""
    names = list(maps)
    if len(names) == 1:
        figure = _channel_grid(names[0], maps[names[0]], max_channels, title)
    else:
        figure = _layer_rows(maps, image, title)
    figure.tight_layout()
    save_figure(figure, path)


def _channel_grid(name: str, maps: torch.Tensor, max_channels: int, title: str) -> Figure:
    """The first ``max_channels`` channels of one layer, in a grid, numbered."""
    channels = maps[:max_channels]
    rows, cols = _grid(len(channels))
    figure, axes = subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(channels):
            ax.imshow(channels[i].float().cpu().numpy(), cmap="viridis")
            ax.set_title(f"{i}", fontsize=7)
    shape = "x".join(map(str, maps.shape))
    shown = f", first {len(channels)}" if len(channels) < len(maps) else ""
    figure.suptitle(title or f"feature maps of {name} ({shape}{shown})")
    return figure


def _layer_rows(maps: dict[str, torch.Tensor], image: torch.Tensor | None, title: str) -> Figure:
    """One row per layer, up to 16 channels each, named on the left; the input image first
    when given."""
    names = list(maps)
    per_row = min(16, max(m.shape[0] for m in maps.values()))
    extra = 1 if image is not None else 0
    figure, axes = subplots(
        len(names),
        per_row + extra,
        figsize=(1.1 * (per_row + extra), 1.2 * len(names) + 0.6),
        squeeze=False,
    )
    for r, name in enumerate(names):
        if extra:
            axes[r, 0].axis("off")
            if r == 0:
                axes[r, 0].imshow(image_array(image), cmap="gray")
                axes[r, 0].set_title("input", fontsize=7)
        _draw_channels(axes[r, extra:], maps[name].float().cpu())
        label = f"{name}\n{'x'.join(map(str, maps[name].shape))}"
        axes[r, extra].text(
            -0.1,
            0.5,
            label,
            transform=axes[r, extra].transAxes,
            ha="right",
            va="center",
            fontsize=7,
        )
    figure.suptitle(title or "feature maps, layer by layer (first channels of each)")
    return figure


def _draw_channels(axes: Any, layer: torch.Tensor) -> None:
    """A layer's channels along a row of axes, each scaled to itself; 1x1 maps (after the last
    convolution) share the layer's scale, otherwise each single pixel would be scaled to itself."""
    for channel, ax in enumerate(axes):
        ax.axis("off")
        if channel < layer.shape[0]:
            scale = {"vmin": float(layer.min()), "vmax": float(layer.max())}
            single = layer.shape[-1] * layer.shape[-2] == 1
            ax.imshow(layer[channel].numpy(), cmap="viridis", **(scale if single else {}))


def plot_filters(weight: torch.Tensor, path: Path, name: str, max_filters: int = 64) -> None:
    """Filters of a convolution. Three input channels: each filter as a colour image (scaled to
    its own range). Otherwise: one row per filter, one column per input channel, in a diverging
    colour map centred on zero (red positive, blue negative)."""
    weight = weight[:max_filters].float()
    out_channels, in_channels = weight.shape[:2]
    if in_channels == 3:
        rows, cols = _grid(out_channels)
        figure, axes = subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.6), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < out_channels:
                w = weight[i]
                w = (w - w.min()) / (w.max() - w.min() + 1e-12)
                ax.imshow(w.permute(1, 2, 0).numpy(), interpolation="nearest")
        figure.suptitle(
            f"{name}: {out_channels} filters, {weight.shape[2]}x{weight.shape[3]}x3 as RGB"
        )
    else:
        shown_in = min(in_channels, 16)
        limit = float(weight.abs().max()) or 1.0
        figure, axes = subplots(
            out_channels,
            shown_in,
            figsize=(0.9 * shown_in + 1, 0.9 * out_channels + 0.6),
            squeeze=False,
        )
        for o in range(out_channels):
            for i in range(shown_in):
                ax = axes[o, i]
                ax.axis("off")
                ax.imshow(
                    weight[o, i].numpy(),
                    cmap="RdBu_r",
                    vmin=-limit,
                    vmax=limit,
                    interpolation="nearest",
                )
        more = (
            f" (first {shown_in} of {in_channels} input channels)" if shown_in < in_channels else ""
        )
        figure.suptitle(
            f"{name}: {out_channels} filters x {in_channels} input channels{more}; "
            f"red > 0 > blue, |w| <= {limit:.3g}"
        )
    figure.tight_layout()
    save_figure(figure, path)


def plot_explanation(image: torch.Tensor, heatmap: torch.Tensor, path: Path, title: str) -> None:
    """The image, the heat map, and the heat map over the image (jet colours, half opacity)."""
    figure, axes = subplots(1, 3, figsize=(10, 3.8))
    picture = image_array(image)
    for ax in axes:
        ax.axis("off")
    axes[0].imshow(picture, cmap="gray")
    axes[0].set_title("input")
    axes[1].imshow(heatmap.cpu().numpy(), cmap="jet", vmin=0, vmax=1)
    axes[1].set_title("heat map (1 = strongest)")
    axes[2].imshow(picture, cmap="gray")
    axes[2].imshow(heatmap.cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[2].set_title("overlay")
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def plot_gradient_flow(
    flows: dict[str, dict[str, list[float]]],
    path: Path,
    dead: dict[str, dict[str, float]] | None = None,
) -> None:
    """Per-layer gradient norms (mean over the steps, log scale), input on the left, one panel
    per model, sharing the y axis so the models compare directly; with ``dead`` (model ->
    ReLU layer -> share of dead units), a second row of bars for each model that has any."""
    rows = 2 if dead else 1
    figure, axes = subplots(
        rows, len(flows), figsize=(5.5 * len(flows), 4.2 * rows), sharey="row", squeeze=False
    )
    for ax, (label, flow) in zip(axes[0], flows.items()):
        names = list(flow)
        means = [sum(v) / len(v) for v in flow.values()]
        lows = [min(v) for v in flow.values()]
        highs = [max(v) for v in flow.values()]
        x = list(range(len(names)))
        ax.fill_between(x, lows, highs, alpha=0.25)
        ax.plot(x, means, "-o", markersize=3)
        if max(highs) > 0:  # a network dead throughout has no gradient to draw on a log axis
            ax.set_yscale("log")
        ax.set_xticks(x, names, rotation=90, fontsize=6)
        ratio = means[0] / means[-1] if means[-1] else float("inf")
        ax.set_title(f"{label}\nfirst / last layer gradient = {ratio:.2g}", fontsize=9)
        ax.set_xlabel("layer (input -> output)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("weight gradient norm")
    if dead:
        for ax, label in zip(axes[1], flows):
            shares = dead.get(label, {})
            if not shares:
                ax.axis("off")
                continue
            x = list(range(len(shares)))
            ax.bar(x, [100 * v for v in shares.values()], color="tab:red", alpha=0.7)
            ax.set_xticks(x, list(shares), rotation=90, fontsize=6)
            ax.set_ylim(0, 100)
            ax.set_title("ReLU units that output 0 for every image", fontsize=9)
            ax.set_xlabel("ReLU layer (input -> output)")
            ax.grid(alpha=0.3, axis="y")
        axes[1][0].set_ylabel("dead units (%)")
    figure.tight_layout()
    save_figure(figure, path)


def plot_mistakes(
    images: torch.Tensor, mistakes, classes: list[str], path: Path, title: str
) -> None:
    """A grid of the most confident wrong predictions: true class, predicted class, confidence."""
    count = max(len(mistakes), 1)
    rows, cols = _grid(count, min(count, 6))
    figure, axes = subplots(rows, cols, figsize=(2.0 * cols, 2.3 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, mistake in zip(axes.flat, mistakes):
        ax.imshow(image_array(images[mistake.index]), cmap="gray")
        ax.set_title(
            f"#{mistake.index} true {classes[mistake.true]}\n"
            f"said {classes[mistake.predicted]} {mistake.confidence:.0%}",
            fontsize=8,
        )
    if not mistakes:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center")
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)
