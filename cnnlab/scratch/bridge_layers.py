"""The NumPy twin of each PyTorch layer, function and tensor method the engine supports: the
table :func:`cnnlab.scratch.bridge.from_torch` builds a twin from.

Modules are converted by type (:data:`MODULES`, filled by :func:`converts`) or by the twin
they name (:data:`NAMED_TWINS`, so that the engine needs no model class); functions such as
``F.relu`` or ``torch.cat`` by :func:`function_twin`, tensor methods such as ``x.view`` by
:func:`method_twin`. A layer used in a way the engine does not compute is refused with
:class:`UnsupportedLayerError` naming it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from ..errors import CnnlabError
from ..model_interface import numpy_twin_of
from . import layers as L
from .lp_pooling import LPPool2d


class UnsupportedLayerError(CnnlabError):
    """A layer or operation the NumPy engine has no twin for."""


def as_array(tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(dtype, copy=True)


def set_parameter(param: L.Parameter | None, tensor: torch.Tensor | None, dtype: np.dtype) -> None:
    if param is not None and tensor is not None:
        param.data = as_array(tensor, dtype)
        param.grad = np.zeros_like(param.data)


def require(name: str, module: Any, ok: bool, what: str) -> None:
    if not ok:
        raise UnsupportedLayerError(
            f"layer {name!r} ({type(module).__name__}): the NumPy engine supports it only with "
            f"{what}; got {module}"
        )


# ------------------------------------------------------------------------------ module twins

ModuleConverter = Callable[[nn.Module, str, np.dtype], L.Layer]
MODULES: dict[type, ModuleConverter] = {}


def converts(*types: type) -> Callable[[ModuleConverter], ModuleConverter]:
    """Register a converter for modules of these types (it becomes a leaf for the tracer)."""

    def register(fn: ModuleConverter) -> ModuleConverter:
        for t in types:
            MODULES[t] = fn
        return fn

    return register


@converts(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(m: nn.Conv2d, name: str, dtype: np.dtype) -> L.Layer:
    require(name, m, m.padding_mode == "zeros", "padding_mode='zeros'")
    layer_class = {1: L.Conv1d, 2: L.Conv2d, 3: L.Conv3d}[len(m.kernel_size)]
    layer = layer_class(
        m.in_channels,
        m.out_channels,
        m.kernel_size,
        m.stride,
        m.padding,
        m.dilation,
        m.groups,
        bias=m.bias is not None,
        dtype=dtype,
    )
    set_parameter(layer.weight, m.weight, dtype)
    set_parameter(layer.bias, m.bias, dtype)
    return layer


@converts(nn.Linear)
def _linear(m: nn.Linear, name: str, dtype: np.dtype) -> L.Layer:
    layer = L.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)
    set_parameter(layer.weight, m.weight, dtype)
    set_parameter(layer.bias, m.bias, dtype)
    return layer


@converts(nn.BatchNorm2d)
def _batch_norm(m: nn.BatchNorm2d, name: str, dtype: np.dtype) -> L.Layer:
    require(
        name,
        m,
        m.affine and m.track_running_stats and m.momentum is not None,
        "affine=True, track_running_stats=True and a numeric momentum",
    )
    layer = L.BatchNorm2d(m.num_features, m.eps, m.momentum, dtype=dtype)
    set_parameter(layer.weight, m.weight, dtype)
    set_parameter(layer.bias, m.bias, dtype)
    layer.running_mean = as_array(m.running_mean, dtype)
    layer.running_var = as_array(m.running_var, dtype)
    return layer


def _max_pool(name, m, kernel, stride, padding, dilation, ceil_mode, return_indices=False):
    require(name, m, dilation in (1, (1, 1)), "dilation=1")
    require(name, m, not ceil_mode and not return_indices, "ceil_mode=False")
    return L.MaxPool2d(kernel, stride or None, padding)


def _avg_pool(name, m, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
    require(
        name,
        m,
        not ceil_mode and count_include_pad and divisor is None,
        "ceil_mode=False, count_include_pad=True and no divisor_override",
    )
    return L.AvgPool2d(kernel, stride or None, padding)


@converts(nn.MaxPool2d)
def _max_pool_module(m: nn.MaxPool2d, name: str, dtype: np.dtype) -> L.Layer:
    return _max_pool(
        name, m, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices
    )


@converts(nn.AvgPool2d)
def _avg_pool_module(m: nn.AvgPool2d, name: str, dtype: np.dtype) -> L.Layer:
    return _avg_pool(
        name,
        m,
        m.kernel_size,
        m.stride,
        m.padding,
        m.ceil_mode,
        m.count_include_pad,
        m.divisor_override,
    )


@converts(nn.LPPool2d)
def _lp_pool_module(m: nn.LPPool2d, name: str, dtype: np.dtype) -> L.Layer:
    require(name, m, not m.ceil_mode, "ceil_mode=False")
    return LPPool2d(m.norm_type, m.kernel_size, m.stride)


@converts(nn.Flatten)
def _flatten(m: nn.Flatten, name: str, dtype: np.dtype) -> L.Layer:
    require(name, m, m.start_dim == 1 and m.end_dim == -1, "start_dim=1, end_dim=-1")
    return L.Flatten()


@converts(nn.Dropout)
def _dropout(m: nn.Dropout, name: str, dtype: np.dtype) -> L.Layer:
    return L.Dropout(m.p)


@converts(nn.LeakyReLU)
def _leaky(m: nn.LeakyReLU, name: str, dtype: np.dtype) -> L.Layer:
    return L.LeakyReLU(m.negative_slope)


@converts(nn.Softmax)
def _softmax(m: nn.Softmax, name: str, dtype: np.dtype) -> L.Layer:
    require(name, m, m.dim is not None, "an explicit dim")
    return L.Softmax(m.dim)


@converts(nn.LocalResponseNorm)
def _lrn(m: nn.LocalResponseNorm, name: str, dtype: np.dtype) -> L.Layer:
    return L.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)


@converts(nn.AdaptiveAvgPool2d)
def _adaptive(m: nn.AdaptiveAvgPool2d, name: str, dtype: np.dtype) -> L.Layer:
    return L.AdaptiveAvgPool2d(m.output_size)


@converts(nn.ZeroPad2d)
def _zero_pad(m: nn.ZeroPad2d, name: str, dtype: np.dtype) -> L.Layer:
    return L.ZeroPad2d(tuple(m.padding))


for _torch_type, _scratch_type in [
    (nn.ReLU, L.ReLU),
    (nn.Tanh, L.Tanh),
    (nn.Sigmoid, L.Sigmoid),
    (nn.Identity, L.Identity),
]:
    MODULES[_torch_type] = lambda m, name, dtype, _t=_scratch_type: _t()


class FitTo32Twin(L.Layer):
    """LeNet-5's stem: 32x32 unchanged, 28x28 padded by 2 (zeros, or each image's background
    level: the lower median of its border ring, a constant for the backward pass), anything
    else resized."""

    def __init__(self, module: nn.Module) -> None:
        self.pad = getattr(module, "pad", "zero")  # FitTo32's own setting

    def forward(self, x: np.ndarray) -> np.ndarray:
        side = x.shape[-1]
        self.op = (
            L.Identity() if side == 32 else L.ZeroPad2d(2) if side == 28 else L.Resize2d((32, 32))
        )
        if side != 28 or self.pad == "zero":
            return self.op.forward(x)
        ring = np.concatenate(
            [x[..., 0, :], x[..., -1, :], x[..., 1:-1, 0], x[..., 1:-1, -1]], axis=-1
        )
        level = np.sort(ring, axis=-1)[..., (ring.shape[-1] - 1) // 2][..., None, None]
        field = np.broadcast_to(level, (*x.shape[:-2], 32, 32)).copy()
        field[..., 2:-2, 2:-2] = x
        return field  # backward: the zero pad's (the border's level is a constant)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return self.op.backward(dout)


# twins of modules that name them: a module class (a model's part, which the engine never
# imports) sets ``numpy_twin = "<name>"`` and stays one call in the trace (``fx_leaf = True``)
NAMED_TWINS: dict[str, Callable[[nn.Module], L.Layer]] = {"fit_to_32": FitTo32Twin}


def supported_layers() -> list[str]:
    """The names of the PyTorch layer types with a NumPy twin, sorted."""
    return sorted({t.__name__ for t in MODULES})


def module_converter(module: nn.Module) -> ModuleConverter | None:
    """How to build ``module``'s twin: by its type, or by the twin it names; ``None`` when the
    engine has none."""
    convert = MODULES.get(type(module))
    if convert is not None:
        return convert
    named = NAMED_TWINS.get(numpy_twin_of(module))
    if named is None:
        return None
    return lambda m, name, dtype: named(m)


# ---------------------------------------------------------------------------- function twins


def argument(node: torch.fx.Node, index: int, key: str, default: Any) -> Any:
    """Argument ``key`` of a call, given by position ``index`` or by keyword."""
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(key, default)


def arguments(node: torch.fx.Node, keys: list[str], defaults: list[Any]) -> list[Any]:
    """Arguments after the tensor, by position or keyword."""
    return [argument(node, i + 1, k, d) for i, (k, d) in enumerate(zip(keys, defaults))]


def function_twin(node: torch.fx.Node) -> tuple[L.Layer, str]:
    fn, name = node.target, node.name
    if fn in (F.relu, torch.relu):
        return L.ReLU(), "relu"
    if fn is torch.tanh:
        return L.Tanh(), "tanh"
    if fn is torch.sigmoid:
        return L.Sigmoid(), "sigmoid"
    if fn in (operator.add, torch.add):
        require(
            name,
            fn,
            all(isinstance(a, torch.fx.Node) for a in node.args[:2]) and "alpha" not in node.kwargs,
            "two tensors (no constants, no alpha)",
        )
        return L.Add(), "add"
    if fn is torch.cat:
        return L.Concat(argument(node, 1, "dim", 0)), "cat"
    if fn is torch.flatten:
        start, end = argument(node, 1, "start_dim", 0), argument(node, 2, "end_dim", -1)
        require(name, fn, start == 1 and end == -1, "start_dim=1, end_dim=-1")
        return L.Flatten(), "flatten"
    if fn is F.max_pool2d:
        keys = ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
        defaults = [None, None, 0, 1, False, False]
        return _max_pool(name, fn, *arguments(node, keys, defaults)), "max_pool2d"
    if fn is F.avg_pool2d:
        keys = ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"]
        defaults = [None, None, 0, False, True]
        divisor = argument(node, 6, "divisor_override", None)
        return _avg_pool(name, fn, *arguments(node, keys, defaults), divisor), "avg_pool2d"
    if fn is F.adaptive_avg_pool2d:
        return L.AdaptiveAvgPool2d(argument(node, 1, "output_size", None)), "adaptive_avg_pool2d"
    if fn is F.dropout:
        return L.Dropout(argument(node, 1, "p", 0.5)), "dropout"
    if fn is F.softmax:
        return L.Softmax(argument(node, 1, "dim", None)), "softmax"
    if fn is F.pad:
        pad, mode, value = (
            argument(node, 1, "pad", None),
            argument(node, 2, "mode", "constant"),
            argument(node, 3, "value", 0),
        )
        require(name, fn, len(pad) == 4 and mode == "constant" and not value, "4 zero pads")
        return L.ZeroPad2d(tuple(pad)), "pad"
    raise UnsupportedLayerError(
        f"operation {name!r} ({getattr(fn, '__name__', fn)}) has no NumPy twin; supported "
        "functions: relu, tanh, sigmoid, add, cat, flatten, max_pool2d, avg_pool2d, "
        "adaptive_avg_pool2d, dropout, softmax, pad"
    )


# ------------------------------------------------------------------------------ method twins


def method_twin(node: torch.fx.Node, shapes: dict[str, tuple]) -> tuple[L.Layer, str]:
    method, source = node.target, node.args[0].name
    if method in ("relu", "tanh", "sigmoid"):
        return {"relu": L.ReLU, "tanh": L.Tanh, "sigmoid": L.Sigmoid}[method](), method
    if method == "flatten":
        start, end = argument(node, 1, "start_dim", 0), argument(node, 2, "end_dim", -1)
        require(node.name, method, start == 1 and end == -1, "x.flatten(1)")
        return L.Flatten(), "flatten"
    if method in ("view", "reshape"):
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
            sizes = sizes[0]
        spec = []
        for size in sizes:
            if isinstance(size, torch.fx.Node):
                origin, axis = shapes.get(size.name, (None, None))
                require(
                    node.name,
                    method,
                    origin == source and axis is not None,
                    "sizes that are ints or the input's own x.size(d)",
                )
                spec.append(("dim", axis))
            else:
                spec.append(int(size))
        return L.Reshape(tuple(spec)), method
    raise UnsupportedLayerError(
        f"method call {node.name!r} (Tensor.{method}) has no NumPy twin; supported methods: "
        "relu, tanh, sigmoid, flatten, view, reshape, size"
    )
