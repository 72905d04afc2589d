"""Figures of the course's "seeing" lessons: activation functions, pixel values, pooling,
the images that excite channels most, robustness and translation curves, data samples and
learned against classic filters. Drawn like :mod:`.plots`, without pyplot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.patches import Rectangle

from .plots import image_array, save_figure, subplots


def _gray(array: np.ndarray) -> dict:
    return {"cmap": "gray", "vmin": 0, "vmax": 255} if array.ndim == 2 else {}


def plot_activations(curves, path: Path) -> None:
    """Each activation (top) and its derivative (bottom), one column per function."""
    figure, axes = subplots(2, len(curves), figsize=(2.4 * len(curves), 5), squeeze=False)
    for col, curve in enumerate(curves):
        top, bottom = axes[0, col], axes[1, col]
        top.plot(curve.x, curve.y)
        top.set_title(curve.name, fontsize=10)
        bottom.plot(curve.x, curve.derivative, color="tab:red")
        peak = curve.max_derivative
        bottom.axhline(peak, color="gray", lw=0.6, ls="--")
        bottom.set_title(f"derivative, max {peak:.3g}", fontsize=8)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.axhline(0, color="black", lw=0.5)
            ax.axvline(0, color="black", lw=0.5)
    axes[0, 0].set_ylabel("f(x)")
    axes[1, 0].set_ylabel("f'(x) by autograd")
    figure.suptitle(
        "activation functions and their derivatives: a gradient is multiplied by "
        "f'(x) at every layer"
    )
    figure.tight_layout()
    save_figure(figure, path)


def plot_pixels(pixels: np.ndarray, path: Path, title: str) -> None:
    """The image with its value written in each pixel (gray only; colour without numbers
    beyond 16 x 16)."""
    rows, cols = pixels.shape[:2]
    figure, axes = subplots(figsize=(max(4.0, 0.42 * cols + 1), max(4.0, 0.42 * rows + 1)))
    axes.imshow(pixels, interpolation="nearest", **_gray(pixels))
    if pixels.ndim == 2:
        for y in range(rows):
            for x in range(cols):
                value = int(pixels[y, x])
                color = "black" if value > 127 else "white"
                axes.text(x, y, str(value), ha="center", va="center", fontsize=6, color=color)
    axes.set_xticks(range(cols))
    axes.set_yticks(range(rows))
    axes.tick_params(labelsize=5)
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)


def plot_pooling(original: np.ndarray, views, path: Path, size: int) -> None:
    """The picture and each down-sampled version side by side."""
    figure, axes = subplots(1, len(views) + 1, figsize=(3.2 * (len(views) + 1), 3.6))
    axes[0].imshow(original, **_gray(original))
    axes[0].set_title(f"original {original.shape[1]}x{original.shape[0]}", fontsize=9)
    for ax, view in zip(axes[1:], views):
        image = np.clip(view.image, 0, 255).astype(np.uint8)
        image = image[..., 0] if image.shape[2] == 1 else image
        ax.imshow(image, **_gray(image))
        ax.set_title(
            f"{view.name}\n{image.shape[1]}x{image.shape[0]}, {view.parameters} weights", fontsize=8
        )
    for ax in axes:
        ax.axis("off")
    figure.suptitle(
        f"window {size}, stride {size}: max keeps bright details, min keeps dark "
        "ones, average blurs"
    )
    figure.tight_layout()
    save_figure(figure, path)


def plot_top_activations(
    images: torch.Tensor,
    labels: torch.Tensor,
    tops,
    classes,
    path: Path,
    layer: str,
    patches: bool = False,
) -> None:
    """One row per channel: its top images, the receptive field of the strongest activation
    boxed in red (``patches``: only the image patch under that field)."""
    rows, cols = len(tops), max(len(row) for row in tops)
    figure, axes = subplots(rows, cols, figsize=(1.5 * cols + 0.8, 1.5 * rows + 0.6), squeeze=False)
    for r, row in enumerate(tops):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row):
                ax.axis("off")
                continue
            top = row[c]
            y0, x0, y1, x1 = top.box
            if patches:
                patch = images[top.index][:, y0:y1, x0:x1]
                ax.imshow(image_array(patch), cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"#{top.index}\n{top.value:.2f}", fontsize=6)
                continue
            ax.imshow(image_array(images[top.index]), cmap="gray")
            ax.add_patch(
                Rectangle(
                    (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red", lw=1.2
                )
            )
            ax.set_title(
                f"#{top.index} {classes[int(labels[top.index])]}\n{top.value:.2f}", fontsize=6
            )
        axes[r, 0].set_ylabel(f"ch {row[0].channel}", fontsize=7)
    figure.suptitle(
        f"{layer}: the test images that excite each channel most\n"
        + (
            "the patch under the strongest activation's receptive field"
            if patches
            else "red: the receptive field of the strongest activation"
        ),
        fontsize=9,
    )
    figure.tight_layout()
    save_figure(figure, path)


def plot_robustness(steps, classes, path: Path, units: dict[str, str]) -> None:
    """Per perturbation: the confidence in the original prediction by step (top) and the
    changed images, titled with the prediction (bottom rows)."""
    kinds = list(dict.fromkeys(s.kind for s in steps))
    per_kind = max(sum(s.kind == k for s in steps) for k in kinds)
    figure, axes = subplots(
        len(kinds),
        per_kind + 1,
        figsize=(1.3 * per_kind + 4.0, 2.0 * len(kinds) + 0.8),
        squeeze=False,
        width_ratios=[3] + [1] * per_kind,
    )
    for r, kind in enumerate(kinds):
        mine = [s for s in steps if s.kind == kind]
        curve = axes[r, 0]
        levels = [s.level for s in mine]
        curve.plot(levels, [s.reference for s in mine], "-o", ms=3, label="original class")
        curve.plot(levels, [s.confidence for s in mine], "--", lw=0.8, label="predicted class")
        curve.set_ylim(0, 1.05)
        curve.set_xlabel(units[kind], fontsize=7)
        curve.set_ylabel(f"{kind}\nprobability", fontsize=8)
        curve.grid(alpha=0.3)
        if r == 0:
            curve.legend(fontsize=6)
        for c in range(per_kind):
            ax = axes[r, 1 + c]
            ax.axis("off")
            if c >= len(mine):
                continue
            step = mine[c]
            ax.imshow(image_array(step.image), cmap="gray")
            changed = step.predicted != mine[0].predicted
            ax.set_title(
                f"{step.level:g}: {classes[step.predicted]}\n{step.confidence:.0%}",
                fontsize=6,
                color="red" if changed else "black",
            )
    figure.suptitle(
        "prediction under noise, shift, rotation and elastic distortion "
        "(red: the prediction changed)",
        fontsize=9,
    )
    figure.tight_layout()
    save_figure(figure, path)


def plot_translation(image, shifted, layers, maps_before, maps_after, path: Path, pixels: int):
    """The input and its shifted copy, then channel 0 of each layer before and after, titled
    with the best whole-cell shift and the error left."""
    figure, axes = subplots(
        2, len(layers) + 1, figsize=(1.9 * (len(layers) + 1), 4.4), squeeze=False
    )
    axes[0, 0].imshow(image_array(image), cmap="gray")
    axes[0, 0].set_title("input", fontsize=7)
    axes[1, 0].imshow(image_array(shifted), cmap="gray")
    axes[1, 0].set_title(f"shifted {pixels} px right", fontsize=7)
    for c, layer in enumerate(layers, start=1):
        for r, maps in enumerate((maps_before, maps_after)):
            axes[r, c].imshow(maps[layer.name][0].float().numpy(), cmap="viridis")
        ok = layer.error < 0.05
        axes[0, c].set_title(
            f"{layer.name}\nshift {layer.cells} cells, err {layer.error:.2g}",
            fontsize=6,
            color="black" if ok else "red",
        )
    for ax in axes.flat:
        ax.axis("off")
    figure.suptitle(
        "channel 0 of each layer, before (top) and after (bottom) the shift; "
        "red: the maps no longer shift exactly",
        fontsize=9,
    )
    figure.tight_layout()
    save_figure(figure, path)


def plot_samples(images: torch.Tensor, labels: torch.Tensor, classes, path: Path, title: str):
    """A grid with one row per class (``images`` sorted by class), titled with class names."""
    per_class = max(int((labels == k).sum()) for k in labels.unique())
    rows = len(labels.unique())
    figure, axes = subplots(
        rows, per_class, figsize=(1.2 * per_class + 1.2, 1.25 * rows + 0.5), squeeze=False
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for r, label in enumerate(labels.unique().tolist()):
        for c, index in enumerate((labels == label).nonzero().flatten().tolist()):
            axes[r, c].imshow(image_array(images[index]), cmap="gray")
            axes[r, c].set_title(classes[label], fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def plot_filter_matches(matches, bank: dict[str, torch.Tensor], path: Path, layer: str):
    """Top row: the classic filters at the learned size. Then each learned filter beside its
    nearest classic one, with the correlation."""
    per_row = 4  # pairs per row
    rows = 1 + -(-len(matches) // per_row)
    cols = max(len(bank), 2 * per_row)
    figure, axes = subplots(rows, cols, figsize=(1.25 * cols, 1.45 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")

    def show(ax, weights, title, color="black"):
        limit = float(weights.abs().max()) or 1.0
        ax.imshow(weights.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(title, fontsize=6, color=color)

    for ax, (name, weights) in zip(axes[0], bank.items()):
        show(ax, weights, f"classic\n{name}", "tab:blue")
    for i, match in enumerate(matches):
        r, c = 1 + i // per_row, 2 * (i % per_row)
        show(axes[r, c], match.learned, f"learned {match.index}")
        sign = -1.0 if match.correlation < 0 else 1.0
        show(
            axes[r, c + 1],
            sign * bank[match.nearest],
            f"{'-' if sign < 0 else ''}{match.nearest}\nr = {match.correlation:+.2f}",
        )
    figure.suptitle(
        f"{layer}: learned filters (mean over input channels) and the nearest "
        "classic filter by normalized correlation",
        fontsize=8,
    )
    figure.tight_layout()
    save_figure(figure, path)
