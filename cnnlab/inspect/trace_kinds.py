"""The kind of each step of a trace: a module's by its class, a functional call's by its
function or method name (``F.max_pool2d`` is a pool, ``x + y`` an add, ``torch.cat`` a
concatenation), with a module that computes the same where there is one, so that one
explanation serves both."""

from __future__ import annotations

from torch import nn

from ..model_interface import numpy_twin_of

ACTIVATIONS = (
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Softplus,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.PReLU,
    nn.SELU,
    nn.CELU,
)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
MODULE_KINDS = (
    ("conv", (nn.Conv2d,)),
    ("relu", (nn.ReLU,)),
    ("activation", ACTIVATIONS),
    ("pool", POOLS),
    ("batchnorm", (nn.BatchNorm1d, nn.BatchNorm2d)),
    ("lrn", (nn.LocalResponseNorm,)),
    ("linear", (nn.Linear,)),
    ("flatten", (nn.Flatten,)),
    ("softmax", (nn.Softmax,)),
    ("dropout", (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)),
    ("identity", (nn.Identity,)),
)
# the values a reshaping function moves without changing them
MOVES = {
    "flatten",
    "view",
    "reshape",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "transpose",
    "permute",
    "getitem",
    "narrow",
    "clone",
}
ELEMENTWISE = ("relu", "activation", "batchnorm", "dropout", "identity", "add", "multiply")


def module_kind(module: nn.Module) -> str:
    """The kind of a module's call: one of conv, relu, activation, pool, batchnorm, lrn,
    linear, flatten, softmax, dropout, identity, fit (LeNet-5's input fit) or other."""
    for kind, types in MODULE_KINDS:
        if isinstance(module, types):
            return kind
    if numpy_twin_of(module) == "fit_to_32":
        return "fit"
    return "other"


def function_step(name: str, args: tuple, kwargs: dict) -> tuple[str, nn.Module | None]:
    """The kind of a functional call (by its function or method name) and a module that
    computes the same (``F.max_pool2d(x, 3, 2)`` -> ``nn.MaxPool2d(3, 2)``), when there is one."""
    rest = args[1:]
    try:
        if name in ("relu", "relu_"):
            return "relu", nn.ReLU()
        if name in ("add", "iadd", "add_"):
            return "add", None
        if name in ("mul", "imul", "mul_"):
            return "multiply", None
        if name in ("cat", "concat", "concatenate"):
            return "concat", None
        if name in ("dropout", "dropout2d", "dropout1d", "alpha_dropout", "feature_alpha_dropout"):
            return "dropout", nn.Identity()
        if name in ("softmax", "log_softmax"):
            return (
                ("softmax", nn.Softmax(_dim(rest, kwargs)))
                if name == "softmax"
                else ("other", None)
            )
        if name == "max_pool2d":
            return "pool", nn.MaxPool2d(*rest, **_drop(kwargs, "return_indices"))
        if name == "avg_pool2d":
            return "pool", nn.AvgPool2d(*rest, **kwargs)
        if name == "adaptive_avg_pool2d":
            return "pool", nn.AdaptiveAvgPool2d(*rest, **kwargs)
        if name == "adaptive_max_pool2d":
            return "pool", nn.AdaptiveMaxPool2d(*rest, **_drop(kwargs, "return_indices"))
        if name in ("sigmoid", "tanh", "hardtanh", "relu6", "silu", "gelu", "hardswish"):
            modules = {
                "sigmoid": nn.Sigmoid,
                "tanh": nn.Tanh,
                "hardtanh": nn.Hardtanh,
                "relu6": nn.ReLU6,
                "silu": nn.SiLU,
                "gelu": nn.GELU,
                "hardswish": nn.Hardswish,
            }
            return "activation", modules[name]()
        if name in ("hardsigmoid",):
            return "activation", nn.Hardsigmoid()
        if name == "mean":
            return "pool", None  # x.mean((2, 3)): a global average, explained on its own
        if name in MOVES:
            return "reshape", None
    except TypeError:  # arguments these modules do not take: explain it as "other"
        return "other", None
    return "other", None


def _dim(rest: tuple, kwargs: dict) -> int | None:
    return kwargs.get("dim", rest[0] if rest else None)


def _drop(kwargs: dict, *keys: str) -> dict:
    return {k: v for k, v in kwargs.items() if k not in keys and k != "inplace"}
