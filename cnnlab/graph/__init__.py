"""Graph convolutional networks on plain PyTorch: convolution beyond the image grid."""

from .data import (
    GRAPH_DATASETS,
    Graph,
    GraphSet,
    load_graph,
    load_karate,
    load_mutag,
    load_planetoid,
)
from .models import GCN, GCNConv, GraphClassifier
from .ops import add_self_loops, adjacency, degree, normalized_adjacency, readout
from .train import GraphConfig, batch_graphs, run_graph_training, train_graphs, train_nodes

__all__ = [
    "GCN",
    "GCNConv",
    "GRAPH_DATASETS",
    "Graph",
    "GraphClassifier",
    "GraphConfig",
    "GraphSet",
    "add_self_loops",
    "adjacency",
    "batch_graphs",
    "degree",
    "load_graph",
    "load_karate",
    "load_mutag",
    "load_planetoid",
    "normalized_adjacency",
    "readout",
    "run_graph_training",
    "train_graphs",
    "train_nodes",
]
