"""Multiply-adds that no layer row knows by itself: attention (``nn.MultiheadAttention``,
``scaled_dot_product_attention``) and matrix-product / linear / convolution *function* calls
in a traced forward, each with its formula; and, for any other call, PyTorch's own count of
the products inside it (``torch.utils.flop_counter``), recorded node by node while the traced
graph runs (:class:`ShapeRecorder`). Used by :mod:`cnnlab.inspect.summary`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .table import Row, dims_text, fmt


def numel(shape) -> int:
    """The number of values in a tensor of ``shape``."""
    total = 1
    for s in shape:
        total *= s
    return total


class ProductCounter(TorchDispatchMode):
    """Counts the FLOPs of matrix products and convolutions by PyTorch's own formulas
    (``torch.utils.flop_counter``) for the calls cnnlab has no formula of its own for (a
    ``torch.fx.wrap``-ed attention helper, ``einsum``). A dispatch mode is per thread, unlike
    ``FlopCounterMode``, whose module tracking installs process-wide hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        from torch.utils.flop_counter import flop_registry

        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in flop_registry and isinstance(func, torch._ops.OpOverload):
            with self:  # e.g. an op made of matrix products: count those
                result = func.decompose(*args, **kwargs)
            if result is not NotImplemented:
                return result
        out = func(*args, **kwargs)
        if packet in flop_registry:
            self.flops += flop_registry[packet](*args, **kwargs, out_val=out)
        return out


class ShapeRecorder(torch.fx.Interpreter):
    """Runs a traced graph node by node, keeping every node's output and the FLOPs of the
    products inside it (:class:`ProductCounter`)."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm)
        self.outputs: dict[str, Any] = {}
        self.flops: dict[str, int] = {}  # node -> FLOPs of its products, by PyTorch's count

    def run_node(self, n: torch.fx.Node) -> Any:
        counter = ProductCounter()
        try:
            with counter:
                out = super().run_node(n)
        except Exception:  # never let the counting itself stop a summary: run it plainly
            counter.flops = 0
            out = super().run_node(n)
        self.outputs[n.name] = out
        self.flops[n.name] = counter.flops
        return out


def node_values(node: torch.fx.Node, outputs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """A node's arguments with every input node replaced by the value it produced."""

    def value(n: torch.fx.Node) -> Any:
        return outputs.get(n.name)

    args = torch.fx.node.map_arg(node.args, value)
    kwargs = torch.fx.node.map_arg(node.kwargs, value)
    return list(args), dict(kwargs)


_MATMULS = {"matmul", "bmm", "mm", "__matmul__"}
_CONVS = {"conv1d", "conv2d", "conv3d"}


def count_products(
    row: Row, target: Any, args: list[Any], kwargs: dict[str, Any], output: Any
) -> None:
    """Fill the multiply-adds of an attention module or a matrix-product / linear /
    convolution function call (the summary runs one image, so totals are per image)."""
    if isinstance(target, nn.MultiheadAttention):
        counted = _attention_macs(target, args, kwargs)
    elif isinstance(target, nn.Module):
        return
    else:
        counted = _function_macs(target, args, kwargs, output)
    if counted:
        row.macs, row.macs_formula = counted


def _attention_macs(
    module: nn.MultiheadAttention, args: list[Any], kwargs: dict[str, Any]
) -> tuple[int, str] | None:
    """``nn.MultiheadAttention``: the four projections, ``Q K^T`` and ``A V`` (each a sum over
    heads of ``head_dim`` = all ``E`` features)."""
    query = args[0] if args else kwargs.get("query")
    key = args[1] if len(args) > 1 else kwargs.get("key", query)
    if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor):
        return None
    axis = 1 if module.batch_first and query.dim() == 3 else 0
    length, source = query.shape[axis], key.shape[axis]
    e, kdim, vdim = module.embed_dim, module.kdim, module.vdim
    projections = 2 * length * e * e + source * (kdim + vdim) * e
    products = 2 * length * source * e
    if kdim == vdim == e and length == source:
        text = f"projections 4*{length}*{e}*{e}"
    else:
        text = f"projections 2*{length}*{e}*{e} + {source}*({kdim}+{vdim})*{e}"
    total = projections + products
    return total, f"{text} + Q.K^T and A.V 2*{length}*{source}*{e} = {fmt(total)}"


def _function_macs(
    target: Any, args: list[Any], kwargs: dict[str, Any], output: Any
) -> tuple[int, str] | None:
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if name in _MATMULS and len(tensors) >= 2 and isinstance(output, torch.Tensor):
        inner = tensors[0].shape[-1]
        total = output.numel() * inner
        return total, (
            f"{dims_text(tuple(output.shape))} outputs x {inner} = {fmt(total)} (matrix product)"
        )
    if name == "linear" and len(tensors) >= 2 and isinstance(output, torch.Tensor):
        inner = tensors[1].shape[-1]
        total = output.numel() * inner
        return total, f"{dims_text(tuple(output.shape))} outputs x {inner} = {fmt(total)}"
    if name in _CONVS and len(tensors) >= 2 and isinstance(output, torch.Tensor):
        per_output = numel(tuple(tensors[1].shape[1:]))
        total = output.numel() * per_output
        return total, f"{dims_text(tuple(output.shape))} outputs x {per_output} = {fmt(total)}"
    if name == "scaled_dot_product_attention":
        q, k, v = (tensors + [None] * 3)[:3]
        if q is None or k is None or v is None:
            q, k, v = (kwargs.get(n, t) for n, t in zip(("query", "key", "value"), (q, k, v)))
        if not all(isinstance(t, torch.Tensor) for t in (q, k, v)):
            return None
        groups, length, source = numel(tuple(q.shape[:-2])), q.shape[-2], k.shape[-2]
        total = groups * length * source * (q.shape[-1] + v.shape[-1])
        return total, (
            f"Q.K^T and A.V {groups}*{length}*{source}*({q.shape[-1]}+{v.shape[-1]}) = {fmt(total)}"
        )
    return None
