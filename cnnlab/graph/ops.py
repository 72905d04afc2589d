"""Graph convolution arithmetic: adjacency, self-loops, degrees, the symmetric normalization
of Kipf & Welling, and readouts. Dense tensors for small graphs, sparse ones for large graphs;
both give the same numbers.

GCN's propagation rule multiplies node features by

    A_hat = D^-1/2 (A + I) D^-1/2,   D = the degree matrix of A + I,

so each node averages itself and its neighbours, each neighbour weighted by
``1 / sqrt(deg(i) deg(j))``: a 3x3 image filter generalized to an irregular neighbourhood.
"""

from __future__ import annotations

import torch


def adjacency(edge_index: torch.Tensor, num_nodes: int, sparse: bool = False) -> torch.Tensor:
    """``A[i, j] = 1`` for every edge ``(i, j)`` in the index."""
    values = torch.ones(edge_index.shape[1])
    a = torch.sparse_coo_tensor(
        edge_index, values, (num_nodes, num_nodes), check_invariants=True
    ).coalesce()
    return a if sparse else a.to_dense()


def add_self_loops(a: torch.Tensor) -> torch.Tensor:
    """``A + I``: every node also keeps its own features."""
    n = a.shape[0]
    if a.is_sparse:
        loops = torch.arange(n).repeat(2, 1)
        eye = torch.sparse_coo_tensor(loops, torch.ones(n), (n, n), check_invariants=True)
        return (a + eye).coalesce()
    return a + torch.eye(n, dtype=a.dtype)


def degree(a: torch.Tensor) -> torch.Tensor:
    """Row sums: the number of neighbours (plus one with self-loops) of each node."""
    return torch.sparse.sum(a, dim=1).to_dense() if a.is_sparse else a.sum(dim=1)


def normalized_adjacency(
    edge_index: torch.Tensor, num_nodes: int, sparse: bool = False
) -> torch.Tensor:
    """``D^-1/2 (A + I) D^-1/2`` as a dense or a sparse (COO) matrix."""
    a = add_self_loops(adjacency(edge_index, num_nodes, sparse))
    inv_sqrt = degree(a).pow(-0.5)
    if a.is_sparse:
        i, j = a.indices()
        values = inv_sqrt[i] * a.values() * inv_sqrt[j]
        return torch.sparse_coo_tensor(
            a.indices(), values, a.shape, check_invariants=True
        ).coalesce()
    return inv_sqrt[:, None] * a * inv_sqrt[None, :]


def propagate(a_hat: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``A_hat @ H`` for a dense or sparse ``A_hat``."""
    return torch.sparse.mm(a_hat, h) if a_hat.is_sparse else a_hat @ h


def readout(h: torch.Tensor, batch: torch.Tensor, num_graphs: int, how: str) -> torch.Tensor:
    """One vector per graph from its nodes' vectors: ``mean``, ``sum`` or ``max`` over the
    nodes with ``batch[node] == graph``. The result does not depend on the nodes' order."""
    out = torch.zeros(num_graphs, h.shape[1], dtype=h.dtype)
    index = batch[:, None].expand_as(h)
    if how == "sum":
        return out.scatter_add(0, index, h)
    if how == "mean":
        counts = torch.zeros(num_graphs, dtype=h.dtype).scatter_add(
            0, batch, torch.ones_like(batch, dtype=h.dtype)
        )
        return out.scatter_add(0, index, h) / counts.clamp(min=1)[:, None]
    if how == "max":
        return torch.full_like(out, float("-inf")).scatter_reduce(0, index, h, "amax")
    raise ValueError(f"readout {how!r}: expected mean, sum or max")
