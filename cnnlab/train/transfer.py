"""Transfer learning: start from a trained network, replace its head, and train on a new data
set with one of three strategies.

- ``feature-extract``: freeze every pretrained layer; only the new head learns. The network is
  a fixed feature extractor.
- ``fine-tune-last:K``: also train the last K blocks of the backbone (a block: one stage of
  ``features``, one ResNet ``layerN``, ...), the earlier ones stay frozen.
- ``full``: train everything, the pretrained layers with a smaller learning rate
  (``backbone_lr_factor`` x lr, 0.1 by default, at most 1) so the new head's large early
  gradients do not wreck what they learned. A factor of 0 is refused: pretrained layers that
  should not learn are frozen with ``feature-extract`` or ``fine-tune-last:K``, which also keep
  their batch-norm statistics fixed (a zero learning rate would not).

:func:`advise` picks one with the usual four-quadrant rule (small or large target data set,
similar to the source or not) and says why. For a large target similar to the source it follows
the course material: retrain the later convolutional layers and the classifier
(``fine-tune-last:K``, K the later half of the backbone's blocks), not the whole network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from ..data import ImageDataset
from ..errors import CnnlabError
from ..model_interface import declared_head, is_fixed
from .config import TrainConfig, TrainingHooks


@dataclass(frozen=True)
class Strategy:
    kind: str  # feature-extract | fine-tune-last | full
    blocks: int = 0  # for fine-tune-last

    @classmethod
    def parse(cls, text: str) -> Strategy:
        if text in ("feature-extract", "full"):
            return cls(text)
        if text.startswith("fine-tune-last:"):
            try:
                k = int(text.split(":", 1)[1])
            except ValueError:
                k = 0
            if k >= 1:
                return cls("fine-tune-last", k)
        raise CnnlabError(
            f"strategy {text!r}: expected feature-extract, fine-tune-last:K (K >= 1 blocks) or full"
        )

    def __str__(self) -> str:
        return f"fine-tune-last:{self.blocks}" if self.kind == "fine-tune-last" else self.kind


def check_backbone_lr_factor(factor: Any) -> float:
    """``factor`` if it is a usable ``backbone_lr_factor``: a finite number with
    ``0 < factor <= 1`` (the pretrained layers of ``full`` train at ``factor`` x lr)."""
    if (
        isinstance(factor, (int, float))
        and not isinstance(factor, bool)
        and math.isfinite(factor)
        and 0 < factor <= 1
    ):
        return float(factor)
    raise CnnlabError(
        f"--backbone-lr-factor {factor!r}: expected a finite number with 0 < factor <= 1, the "
        "fraction of --lr at which --strategy full trains the pretrained layers (0.1 is usual); "
        "to keep them fixed use --strategy feature-extract or fine-tune-last:K"
    )


def head_path(model: nn.Module) -> str:
    """Dotted path of the classifier's output layer: the one the model declares
    (:func:`cnnlab.model_interface.declared_head`), else its last ``nn.Linear``."""
    declared = declared_head(model)
    if declared is not None:
        return declared
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise CnnlabError(f"{type(model).__name__} has no fully connected output layer to replace")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Put a freshly initialized ``Linear(in_features, num_classes)`` where the old output
    layer was; returns it."""
    path = head_path(model)
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = getattr(parent, attr)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(parent, attr, new)
    return new


def backbone_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone's blocks in forward order: the model's top-level children, with
    ``nn.Sequential`` containers opened one level; blocks without parameters and the head's
    own container are left out."""
    head = head_path(model)
    blocks = []
    for name, child in model.named_children():
        parts = list(child.named_children()) if isinstance(child, nn.Sequential) else [("", child)]
        for sub_name, module in parts:
            full = f"{name}.{sub_name}" if sub_name else name
            if head == full or head.startswith(full + "."):
                continue
            if any(True for _ in module.parameters()):
                blocks.append((full, module))
    return blocks


def trainable_groups(
    model: nn.Module, strategy: Strategy, lr: float, backbone_lr_factor: float = 0.1
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Freeze what the strategy keeps fixed (``requires_grad``) and return the optimizer's
    parameter groups — the head, then the trained backbone with its learning rate — and a
    report of what is trained. Idempotent, so a resumed run rebuilds the same groups."""
    check_backbone_lr_factor(backbone_lr_factor)
    head = model.get_submodule(head_path(model))
    head_ids = {id(p) for p in head.parameters()}
    blocks = backbone_blocks(model)
    trainable_blocks: list[str] = []
    for p in model.parameters():  # what the architecture fixes (is_fixed) stays fixed
        p.requires_grad_((strategy.kind == "full" or id(p) in head_ids) and not is_fixed(p))
    if strategy.kind == "fine-tune-last":
        if strategy.blocks > len(blocks):
            raise CnnlabError(
                f"fine-tune-last:{strategy.blocks}: the backbone has {len(blocks)} blocks "
                f"({', '.join(n for n, _ in blocks)})"
            )
        for name, module in blocks[-strategy.blocks :]:
            trainable_blocks.append(name)
            for p in module.parameters():
                p.requires_grad_(not is_fixed(p))
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": list(head.parameters()), "lr": lr}]
    if backbone:
        factor = backbone_lr_factor if strategy.kind == "full" else 1.0
        groups.append({"params": backbone, "lr": lr * factor})
    report = {
        "strategy": str(strategy),
        "head": head_path(model),
        "blocks": [n for n, _ in blocks],
        "trained_blocks": [n for n, _ in blocks] if strategy.kind == "full" else trainable_blocks,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "backbone_lr": lr * (backbone_lr_factor if strategy.kind == "full" else 1.0),
    }
    return groups, report


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every batch norm whose weights are frozen in evaluation mode, so that training the
    rest of the network does not move its running mean and variance either."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def training_hooks(settings: dict[str, Any], lr: float) -> TrainingHooks:
    """What a transfer run adds to the trainer's loop, from ``TrainConfig.transfer``
    (``{"strategy", "backbone_lr_factor", ...}``): the strategy's parameter groups (frozen
    layers left out, the pretrained ones at their learning rate; rebuilt the same way when the
    run resumes) and frozen batch norms kept in evaluation mode every epoch."""

    def param_groups(model: nn.Module) -> list[dict[str, Any]]:
        strategy = Strategy.parse(settings["strategy"])
        factor = settings.get("backbone_lr_factor", 0.1)
        return trainable_groups(model, strategy, lr, factor)[0]

    return TrainingHooks(param_groups=param_groups, after_train_mode=freeze_batchnorm)


Blocks = int | Sequence[tuple[str, nn.Module]] | None
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def later_blocks(blocks: Blocks) -> int:
    """How many of the backbone's last blocks a large, similar target retrains. Given the
    blocks (:func:`backbone_blocks`): from the later half (rounded down, at least one) of the
    blocks that hold a convolution to the end, so the later conv layers and the hidden
    classifier layers learn. Given only their number: the later half of them. The first block
    always stays frozen (when there are two or more); 2 when the backbone is not known."""
    if blocks is None:
        return 2
    count = blocks if isinstance(blocks, int) else len(blocks)
    if count < 1:
        raise CnnlabError(f"blocks={count}: a backbone has at least 1 block to retrain")
    convs = []
    if not isinstance(blocks, int):
        convs = [
            i
            for i, (_, module) in enumerate(blocks)
            if any(isinstance(m, _CONVS) for m in module.modules())
        ]
    # the first of the later half of the conv blocks, or of all blocks
    start = convs[-max(1, len(convs) // 2)] if convs else count - max(1, count // 2)
    start = max(start, 1) if count > 1 else 0
    return count - start


def advise(
    target_images: int, num_classes: int, similar: bool, blocks: Blocks = None
) -> tuple[Strategy, str]:
    """The four-quadrant rule (CS231n; the course material): with few images per class, train
    little (a small target set cannot pin down millions of weights); with a target unlike the
    source, retrain more (the late layers' features are specific to the source classes). A
    large target similar to the source retrains the later convolutional layers and the
    classifier (``fine-tune-last:K``, K from :func:`later_blocks`; ``blocks``: the source
    backbone's :func:`backbone_blocks`, or their number), not the whole network."""
    per_class = target_images / max(num_classes, 1)
    small = per_class < 1000
    size = (
        f"{target_images:,} images, {per_class:,.0f} per class: "
        f"{'small' if small else 'large'} (< 1,000 per class counts as small)"
    )
    if small and similar:
        return Strategy("feature-extract"), (
            f"{size}; similar to the source. Keep the pretrained features and train only a new "
            "head: fine-tuning millions of weights on this little data would overfit."
        )
    if small and not similar:
        return Strategy("fine-tune-last", 1), (
            f"{size}; unlike the source. The last block's features are specific to the source "
            "classes, so retrain it with the head and keep the general early layers frozen."
        )
    if similar:
        k = later_blocks(blocks)
        if blocks is None:
            of = f"the last {k} blocks"
        elif isinstance(blocks, int):
            of = f"the last {k} of the backbone's {blocks} blocks"
        else:
            of = f"the last {k} of the backbone's {len(blocks)} blocks, from {blocks[-k][0]} on"
        return Strategy("fine-tune-last", k), (
            f"{size}; similar to the source. As the course material advises for a large, "
            f"similar data set, retrain the later convolutional layers ({of}) and the "
            "classifier: their features are the source-specific ones, while the early layers' "
            "general edges and textures already fit, so the whole network need not be retrained."
        )
    return Strategy("full"), (
        f"{size}; unlike the source. Fine-tune everything (pretrained weights are still a "
        "better start than random ones); with much more data, training from scratch is an "
        "option too."
    )


# ------------------------------------------------------- the target data as the source reads it


def imagenet_view(source: str, image_size: int) -> dict[str, Any]:
    """For a ``torchvision:NAME`` source, what its ImageNet weights expect of an image (from
    torchvision's own transforms): ``resize`` (the shorter side before the central
    ``image_size`` crop, 256 for 224) and ``normalization`` (ImageNet's mean and std), to keep
    in ``config.transfer`` so that training, evaluation and prediction all read images so;
    for any other source nothing (a cnnlab run's images are scaled by the target's own
    statistics, as it was trained)."""
    if not source.startswith("torchvision:"):
        return {}
    from ..models.tv_models import imagenet_input

    imagenet = imagenet_input(source[len("torchvision:") :])
    return {
        "resize": round(image_size * imagenet.resize / imagenet.crop),
        "normalization": {"mean": imagenet.mean, "std": imagenet.std},
    }


def source_view(data: ImageDataset, config: TrainConfig) -> ImageDataset:
    """``data`` converted to ``config``'s channels and image size; for a run transferred from
    an ImageNet model (``config.transfer["resize"]``) the shorter side resized to ``resize``
    first and the central ``image_size`` x ``image_size`` kept, as its weights were trained."""
    resize = (config.transfer or {}).get("resize")
    if not (resize and config.image_size and resize > config.image_size):
        return data.converted(config.image_channels, config.image_size)
    if not isinstance(data, ImageDataset):  # its crop would differ from predict's 256 -> 224
        raise CnnlabError(
            f"{data.source}: a streamed image folder cannot take an ImageNet model's view "
            f"(shorter side {resize}, centre {config.image_size}); transfer from "
            "torchvision:NAME with a folder that fits in memory (without --stream)"
        )
    from ..data.augment import center_crop

    data = data.converted(config.image_channels, resize)
    size = config.image_size
    note = f"centre-cropped to {size}x{size} (the ImageNet view)"
    return replace(data, images=center_crop(data.images, size), notes=[*data.notes, note])
