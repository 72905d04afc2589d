"""The from-scratch NumPy engine: every CNN layer's forward and backward written by hand.

Imports NumPy only; PyTorch appears in its tests, which prove the two compute the same thing.
"""

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
    LeakyReLU,
    Linear,
    LocalResponseNorm,
    MaxPool2d,
    MinPool2d,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from .losses import MSE, SoftmaxCrossEntropy
from .optim import SGD, Adam

__all__ = [
    "MSE", "SGD", "Adam", "Add", "AvgPool2d", "BatchNorm2d", "Concat", "Conv1d", "Conv2d",
    "Conv3d", "Dropout", "Flatten", "GlobalAvgPool", "LeakyReLU", "Linear", "LocalResponseNorm",
    "MaxPool2d", "MinPool2d", "Parameter", "ReLU", "Sequential", "Sigmoid", "Softmax",
    "SoftmaxCrossEntropy", "Tanh", "check_gradients", "col2im", "convolve2d", "convolve2d_full",
    "correlate2d", "correlate2d_naive", "im2col", "numerical_gradient", "output_size",
]  # fmt: skip
