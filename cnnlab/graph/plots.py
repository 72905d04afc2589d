"""Pictures of a graph model: the karate club coloured by predicted club, and the learned 2-D
embedding of every member."""

from __future__ import annotations

from pathlib import Path

import torch

from ..inspect.plots import save_figure, subplots
from .data import Graph


def plot_karate(
    graph: Graph, predicted: torch.Tensor, embedding: torch.Tensor, path: Path, title: str = ""
) -> None:
    """Left: the friendship graph (networkx spring layout, fixed seed) coloured by predicted
    club; the labelled nodes have a black ring, wrong predictions a red cross. Right: each
    member's 2-D embedding from the GCN's last hidden layer, coloured by the true club."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(graph.num_nodes))
    g.add_edges_from(graph.edge_index.t().tolist())
    layout = nx.spring_layout(g, seed=1)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    figure, (left, right) = subplots(1, 2, figsize=(12, 5.5))
    nx.draw_networkx_edges(g, layout, ax=left, alpha=0.3)
    labelled = graph.train_mask.tolist() if graph.train_mask is not None else []
    ringed = [bool(labelled and labelled[i]) for i in range(graph.num_nodes)]
    nx.draw_networkx_nodes(
        g,
        layout,
        ax=left,
        node_color=[colours[int(c)] for c in predicted],
        edgecolors=["black" if r else "white" for r in ringed],
        linewidths=[2.5 if r else 0.5 for r in ringed],
        node_size=260,
    )
    nx.draw_networkx_labels(g, layout, ax=left, font_size=7)
    wrong = (predicted != graph.y).nonzero().flatten().tolist()
    for i in wrong:
        left.plot(*layout[i], "x", color="red", markersize=14, mew=2)
    left.set_title(f"predicted club ({len(wrong)} wrong of {graph.num_nodes}); ringed = labelled")
    left.axis("off")
    points = embedding.numpy()
    for c, name in enumerate(graph.classes):
        chosen = (graph.y == c).numpy()
        right.scatter(
            points[chosen, 0], points[chosen, 1], color=colours[c], label=f"{name} (true)"
        )
    for i, (px, py) in enumerate(points):
        right.annotate(str(i), (px, py), fontsize=6, xytext=(2, 2), textcoords="offset points")
    right.set_title("learned 2-D embedding (last hidden GCN layer)")
    right.legend()
    right.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)
