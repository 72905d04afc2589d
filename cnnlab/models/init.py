"""Weight initialisation schemes, named: the source framework's defaults spelled out.

- ``torch``: what PyTorch's layers do on construction (kaiming-uniform with ``a = sqrt(5)``,
  i.e. weights and biases uniform in +-1/sqrt(fan_in)); nothing is changed.
- ``keras``: Keras' defaults for ``Conv*D`` and ``Dense``: ``kernel_initializer="glorot_uniform"``
  (uniform in +-sqrt(6 / (fan_in + fan_out)), fans counted over the kernel's window as Keras
  counts them) and ``bias_initializer="zeros"``. The course's Keras experiments (E4-E6) start
  here; for a 3x3x128 convolution this is three times PyTorch's weight variance.
- ``normal-0.01``: weights N(0, 0.01^2) and zero biases, the AlexNet paper's starting point
  (Krizhevsky et al. 2012, section 5), for its ReLU-vs-tanh experiment.

Batch-norm and other layers keep their own initialisation in every scheme.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CnnlabError

INIT_SCHEMES = ("torch", "keras", "normal-0.01")
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def glorot_limit(weight: torch.Tensor) -> float:
    """Keras' glorot_uniform bound ``sqrt(6 / (fan_in + fan_out))`` for a torch weight
    (``out x in [x kernel window]``)."""
    window = weight[0][0].numel() if weight.dim() > 2 else 1
    fan_in, fan_out = weight.shape[1] * window, weight.shape[0] * window
    return (6.0 / (fan_in + fan_out)) ** 0.5


@torch.no_grad()
def initialize(model: nn.Module, scheme: str, generator: torch.Generator | None = None) -> int:
    """Re-initialise every convolution and fully connected layer of ``model`` by ``scheme``
    (one of :data:`INIT_SCHEMES`); returns how many layers were set. ``torch`` changes nothing.
    """
    if scheme not in INIT_SCHEMES:
        raise CnnlabError(f"--init {scheme!r}: expected one of {', '.join(INIT_SCHEMES)}")
    if scheme == "torch":
        return 0
    count = 0
    for module in model.modules():
        if not isinstance(module, _WEIGHTED):
            continue
        weight = module.weight
        if scheme == "keras":
            limit = glorot_limit(weight)
            weight.copy_(torch.rand(weight.shape, generator=generator) * (2 * limit) - limit)
        else:
            weight.copy_(torch.randn(weight.shape, generator=generator) * 0.01)
        if module.bias is not None:
            module.bias.zero_()
        count += 1
    return count


__all__ = ["INIT_SCHEMES", "glorot_limit", "initialize"]
