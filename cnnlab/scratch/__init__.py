"""The from-scratch NumPy engine: every CNN layer's forward and backward written by hand.

Imports NumPy only. PyTorch appears in its tests and in the bridge (:mod:`.bridge` and its
table of layer twins :mod:`.bridge_layers`, loaded on first use of :func:`from_torch` or
:func:`compare`), which prove the two compute the same thing.

Modules: :mod:`.functional` (im2col, correlation), :mod:`.base` (``Parameter``, ``Layer``),
:mod:`.conv_layers`, :mod:`.pooling` (and :mod:`.lp_pooling`), :mod:`.layers` (every other
layer; all layers can be imported from it), :mod:`.network` (layers wired by name: residual
adds, concatenations), :mod:`.losses`, :mod:`.optim`, :mod:`.gradcheck`, :mod:`.training`.
"""

from typing import Any

from .functional import (
    col2im,
    convolve2d,
    convolve2d_full,
    correlate2d,
    correlate2d_naive,
    im2col,
    output_size,
)
from .gradcheck import check_gradients, numerical_gradient
from .layers import (
    AdaptiveAvgPool2d,
    Add,
    AvgPool2d,
    BatchNorm2d,
    Concat,
    Conv1d,
    Conv2d,
    Conv3d,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Identity,
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    MinPool2d,
    Parameter,
    ReLU,
    Reshape,
    Resize2d,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    ZeroPad2d,
)
from .losses import MSE, SoftmaxCrossEntropy
from .lp_pooling import LPPool2d
from .network import Network, Node
from .optim import SGD, Adam


def from_torch(module: Any, dtype: Any = "float64") -> Network:
    """A NumPy twin of a ``torch.nn.Module`` with its weights copied (see :mod:`.bridge`)."""
    from .bridge import from_torch as convert

    return convert(module, dtype)


def compare(model: Any, x: Any, target: Any, dtype: Any = "float64", train: bool = False):
    """Layer-by-layer differences between ``model`` and its NumPy twin (see :mod:`.bridge`)."""
    from .bridge import compare as run

    return run(model, x, target, dtype, train)


__all__ = [
    "Adam",
    "AdaptiveAvgPool2d",
    "Add",
    "AvgPool2d",
    "BatchNorm2d",
    "Concat",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LocalResponseNorm",
    "LPPool2d",
    "MSE",
    "MaxPool2d",
    "MinPool2d",
    "Network",
    "Node",
    "Parameter",
    "ReLU",
    "Reshape",
    "Resize2d",
    "SGD",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Tanh",
    "ZeroPad2d",
    "check_gradients",
    "col2im",
    "compare",
    "convolve2d",
    "convolve2d_full",
    "correlate2d",
    "correlate2d_naive",
    "from_torch",
    "im2col",
    "numerical_gradient",
    "output_size",
]
