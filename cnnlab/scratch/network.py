"""A network as a list of layer calls, so that branches (residual adds, Inception concats) run
forward and backward like a straight stack.

Forward runs the nodes in order and keeps every node's output. Backward walks the nodes in
reverse: each node hands the gradient of its output to its layer's ``backward`` and adds what
comes back to the gradients of its inputs. A value read by two nodes (the input of a residual
block) receives the sum of both gradients — the chain rule for a fork.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CnnlabError
from .base import Layer, Parameter


@dataclass
class Node:
    """One layer call. ``name`` is unique; ``module`` is the PyTorch module path it came from
    (``"layer1.0.conv1"``) or ``None`` for a function such as ``add``; ``kind`` says what it
    computes (``"Conv2d"``, ``"add"``)."""

    name: str
    layer: Layer
    inputs: tuple[str, ...]
    kind: str
    module: str | None = None


class Network(Layer):
    """Layers wired by name. ``forward(x)`` feeds ``x`` in as ``input_name``; afterwards
    ``values[name]`` holds every node's output and, after ``backward``, ``grads[name]`` the
    gradient of the loss with respect to it."""

    def __init__(self, nodes: list[Node], input_name: str, output_name: str) -> None:
        names = [input_name] + [node.name for node in nodes]
        if len(set(names)) != len(names):
            raise CnnlabError(f"network node names must be unique, got {names}")
        known = {input_name}
        for node in nodes:
            missing = [i for i in node.inputs if i not in known]
            if missing:
                raise CnnlabError(f"node {node.name!r} reads {missing} before they are computed")
            known.add(node.name)
        if output_name not in known:
            raise CnnlabError(f"output {output_name!r} is not a node of the network")
        self.nodes, self.input_name, self.output_name = nodes, input_name, output_name
        self.values: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def named_parameters(self) -> dict[str, Parameter]:
        """Parameters under their module's path, e.g. ``"layer1.0.conv1.weight"`` (the names
        ``torch.nn.Module.named_parameters`` uses)."""
        named = {}
        for node in self.nodes:
            prefix = node.name if node.module is None else node.module
            for key, param in node.layer.named_parameters().items():
                named[f"{prefix}.{key}" if prefix else key] = param  # "" = the root module
        return named

    def train(self, mode: bool = True) -> Network:
        self.training = mode
        for node in self.nodes:
            node.layer.train(mode)
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        values = {self.input_name: x}
        for node in self.nodes:
            values[node.name] = node.layer(*(values[i] for i in node.inputs))
        self.values = values
        return values[self.output_name]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        grads = {self.output_name: dout}
        for node in reversed(self.nodes):
            if node.name not in grads:  # does not reach the output
                continue
            dxs = node.layer.backward(grads[node.name])
            for name, dx in zip(node.inputs, dxs if isinstance(dxs, tuple) else (dxs,)):
                grads[name] = grads[name] + dx if name in grads else dx
        self.grads = grads
        return grads.get(self.input_name, np.zeros_like(self.values[self.input_name]))

    def __repr__(self) -> str:
        lines = [f"Network(input={self.input_name!r}, output={self.output_name!r})"]
        for node in self.nodes:
            source = f" [{node.module}]" if node.module else ""
            lines.append(f"  {node.name} = {node.kind}({', '.join(node.inputs)}){source}")
        return "\n".join(lines)
