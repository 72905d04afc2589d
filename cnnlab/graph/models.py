"""GCNConv (Kipf & Welling 2017), the two-layer node classifier and a graph classifier."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .ops import propagate, readout


class GCNConv(nn.Module):
    """``H' = A_hat H W + b``: transform every node's features by ``W`` (shared by all nodes,
    like a convolution kernel shared by all pixels), then average over each neighbourhood
    with ``A_hat``. Glorot-uniform weights and zero bias, as in the paper's code."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.xavier_uniform_(self.weight)

    def forward(self, h: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        transformed = torch.sparse.mm(h, self.weight) if h.is_sparse else h @ self.weight
        out = propagate(a_hat, transformed)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]} -> {self.weight.shape[1]}"


def dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; on a sparse tensor only its stored (non-zero) values are dropped, as
    in the paper's code (Cora's bag-of-words features are 98.7% zeros)."""
    if not training or p == 0:
        return h
    if h.is_sparse:
        h = h.coalesce()
        keep = torch.rand(h.values().shape) >= p
        return torch.sparse_coo_tensor(
            h.indices()[:, keep], h.values()[keep] / (1 - p), h.shape, check_invariants=True
        ).coalesce()
    return F.dropout(h, p, training)


class GCN(nn.Module):
    """Node classification: ``softmax(A_hat ReLU(A_hat X W0) W1)`` with dropout on the input of
    each layer (the paper: 16 hidden units, dropout 0.5). Extra ``hidden`` entries add layers;
    ``embedding`` after a forward holds the last hidden layer (for plots)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: tuple[int, ...] = (16,),
        dropout: float = 0.5,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleList(GCNConv(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dropout = dropout
        self.activation = torch.tanh if activation == "tanh" else F.relu
        self.embedding: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            h = dropout(h, self.dropout, self.training)
            h = layer(h, a_hat)
            if i < len(self.layers) - 1:
                h = self.activation(h)
                self.embedding = h.detach()
        return h


class GraphClassifier(nn.Module):
    """Graph classification: GCN layers, a readout over each graph's nodes (``mean``, the
    course's choice, ``sum`` or ``max``, see :func:`cnnlab.graph.ops.readout`), a linear
    layer."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: int = 64,
        layers: int = 3,
        readout: str = "mean",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        sizes = [in_features] + [hidden] * layers
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.how = readout
        self.dropout = dropout
        self.head = nn.Sequential(
            nn.Linear(hidden * layers, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(
        self, x: torch.Tensor, a_hat: torch.Tensor, batch: torch.Tensor, num_graphs: int
    ) -> torch.Tensor:
        h, pooled = x, []
        for conv in self.convs:
            h = F.relu(conv(h, a_hat))
            pooled.append(readout(h, batch, num_graphs, self.how))  # every depth's view
        return self.head(torch.cat(pooled, dim=1))
