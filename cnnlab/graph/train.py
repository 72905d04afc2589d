"""Training GCNs: full-batch node classification (Kipf & Welling's recipe) and graph
classification with cross-validation, into run folders like image training."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .. import run_folder
from ..errors import CnnlabError
from ..outputs import progress_bars_shown
from ..train.config import LR_MAX, SEED_MAX
from ..train.distributed import seed_everything
from ..train.options import is_count, is_real_in
from ..train.steps import TrainingDiverged
from .data import Graph, GraphSet, load_graph
from .models import GCN, GraphClassifier
from .ops import normalized_adjacency

MAX_HIDDEN = 65536  # units per layer; Cora's first layer is then 1433 x 65536 floats (375 MB)
ACTIVATIONS = ("relu", "tanh")
READOUTS = ("mean", "sum", "max")
# what each readout makes of a graph's node vectors (``cnnlab graph train --readout``)
READOUT_TEXT = {
    "mean": "the average of its node vectors (the course's choice: a molecule of 10 atoms and "
    "one of 28 give vectors of the same scale)",
    "sum": "the sum of its node vectors (= mean x node count: the size of the graph is in the "
    "vector, GIN's choice)",
    "max": "the largest value of each feature over its nodes (one strong atom is enough)",
}


@dataclass
class GraphConfig:
    """Defaults are the paper's for Cora: 200 epochs of Adam, lr 0.01, weight decay 5e-4 on
    the first layer, 16 hidden units, dropout 0.5, early stopping when the validation loss has
    not improved for 10 epochs."""

    dataset: str = "cora"
    data_dir: str | None = None
    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-4
    hidden: list[int] = field(default_factory=lambda: [16])
    dropout: float = 0.5
    activation: str = "relu"
    patience: int = 10  # 0: no early stopping
    sparse: bool = True
    seed: int = 0
    readout: str = "mean"  # graph classification: mean (the course's), sum or max
    progress: bool = True

    def __post_init__(self) -> None:
        """Refuse every setting that cannot train, before any data is read or folder made."""
        hidden_ok = (
            isinstance(self.hidden, (list, tuple))
            and len(self.hidden) > 0
            and all(is_count(h, 1, MAX_HIDDEN) for h in self.hidden)
        )
        checks = [
            (is_count(self.epochs, 1), "epochs", self.epochs, "a positive integer (200 is usual)"),
            (
                is_real_in(self.lr, 0, LR_MAX) and self.lr > 0,
                "lr",
                self.lr,
                f"a finite number in (0, {LR_MAX:g}]; 0.01 is the paper's",
            ),
            (
                is_real_in(self.weight_decay, 0, 1),
                "weight_decay",
                self.weight_decay,
                "a number in [0, 1] (5e-4 is the paper's)",
            ),
            (
                hidden_ok,
                "hidden",
                self.hidden,
                f"one or more layer sizes, each an integer 1..{MAX_HIDDEN}, e.g. --hidden 16 or "
                "4,2",
            ),
            (
                is_real_in(self.dropout, 0, 1) and self.dropout < 1,
                "dropout",
                self.dropout,
                "0 <= dropout < 1 (0.5 is the paper's)",
            ),
            (
                self.activation in ACTIVATIONS,
                "activation",
                self.activation,
                " or ".join(ACTIVATIONS),
            ),
            (
                is_count(self.patience, 0),
                "patience",
                self.patience,
                "an integer >= 0 (0: no early stopping)",
            ),
            (is_count(self.seed, 0, SEED_MAX), "seed", self.seed, f"an integer 0..{SEED_MAX}"),
            (self.readout in READOUTS, "readout", self.readout, ", ".join(READOUTS)),
        ]
        for ok, name, value, expected in checks:
            if not ok:
                raise CnnlabError(f"{name}={value!r}: expected {expected}")

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> GraphConfig:
        presets: dict[str, dict[str, Any]] = {
            "karate": {
                "hidden": [4, 2],
                "activation": "tanh",
                "dropout": 0.0,
                "patience": 0,
                "weight_decay": 0.0,
                "epochs": 300,
            },
            "mutag": {
                "hidden": [64],
                "epochs": 300,
                "patience": 0,
                "weight_decay": 0.0,
                "lr": 0.01,
            },
        }
        values = {"dataset": dataset, **presets.get(dataset, {}), **overrides}
        return cls(**values)


def _diverged(config: GraphConfig, epoch: int, where: str = "") -> TrainingDiverged:
    return TrainingDiverged(
        f"{config.dataset}{where}, epoch {epoch}: the training loss became NaN or infinite "
        f"with lr {config.lr:g} (Adam); nothing was saved. Lower --lr (e.g. by 10x)"
    )


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean()) if len(y) else float("nan")


@dataclass
class NodeResult:
    model: GCN
    history: list[dict[str, float]]
    test_acc: float
    val_acc: float
    best_epoch: int


def train_nodes(graph: Graph, config: GraphConfig) -> NodeResult:
    """Full-batch training on the labelled nodes; the weights of the epoch with the lowest
    validation loss are kept (the last epoch when there is no validation set)."""
    seed_everything(config.seed)
    a_hat = normalized_adjacency(graph.edge_index, graph.num_nodes, config.sparse)
    x = graph.x.to_sparse() if config.sparse else graph.x
    model, optimizer = _node_model(graph, config)
    masks = {k: getattr(graph, f"{k}_mask") for k in ("train", "val", "test")}
    history, best, best_state, since_best = [], math.inf, None, 0
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=graph.name,
        disable=not progress_bars_shown(config.progress),
        leave=False,
    )
    best_epoch = config.epochs
    for epoch in bar:
        row = _node_epoch(model, optimizer, graph, (x, a_hat), masks, config, epoch)
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row.get('val_acc', 0):.3f}")
        watched = row.get("val_loss")
        if watched is not None and watched < best:
            best, since_best, best_epoch = watched, 0, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif watched is not None:
            since_best += 1
            if config.patience and since_best >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        logits = model(x, a_hat)
    test = masks["test"]
    val = masks["val"]
    return NodeResult(
        model,
        history,
        _accuracy(logits[test], graph.y[test]),
        _accuracy(logits[val], graph.y[val]) if val is not None and val.any() else float("nan"),
        best_epoch,
    )


def _node_model(graph: Graph, config: GraphConfig) -> tuple[GCN, torch.optim.Optimizer]:
    """The GCN for ``graph``'s features and classes, and its Adam optimizer."""
    model = GCN(
        graph.x.shape[1],
        len(graph.classes),
        tuple(config.hidden),
        config.dropout,
        config.activation,
    )
    # weight decay on the first layer only, as in the paper
    first, rest = list(model.layers[0].parameters()), list(model.layers[1:].parameters())
    optimizer = torch.optim.Adam(
        [{"params": first, "weight_decay": config.weight_decay}, {"params": rest}], lr=config.lr
    )
    return model, optimizer


def _node_epoch(
    model: GCN,
    optimizer: torch.optim.Optimizer,
    graph: Graph,
    inputs: tuple[torch.Tensor, torch.Tensor],
    masks: dict[str, torch.Tensor | None],
    config: GraphConfig,
    epoch: int,
) -> dict[str, Any]:
    """One full-batch step on the training nodes, then the history row: the training loss and
    every split's accuracy (and the validation loss)."""
    model.train()
    optimizer.zero_grad()
    logits = model(*inputs)
    loss = F.cross_entropy(logits[masks["train"]], graph.y[masks["train"]])
    if not math.isfinite(loss.item()):
        raise _diverged(config, epoch)
    loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model(*inputs)
    row = {"epoch": epoch, "train_loss": loss.item()}
    for split, mask in masks.items():
        if mask is not None and mask.any():
            row[f"{split}_acc"] = _accuracy(logits[mask], graph.y[mask])
            if split == "val":
                row["val_loss"] = float(F.cross_entropy(logits[mask], graph.y[mask]))
    return row


def batch_graphs(graphs: list[Graph], sparse: bool = True):
    """Many graphs as one block-diagonal graph: stacked features, normalized adjacency with one
    block per graph, and ``batch[node] = graph index``."""
    xs, edges, batch, offset = [], [], [], 0
    for i, g in enumerate(graphs):
        xs.append(g.x)
        edges.append(g.edge_index + offset)
        batch.append(torch.full((g.num_nodes,), i, dtype=torch.long))
        offset += g.num_nodes
    edge_index = torch.cat(edges, dim=1)
    a_hat = normalized_adjacency(edge_index, offset, sparse)
    return torch.cat(xs), a_hat, torch.cat(batch), torch.stack([g.y for g in graphs])


def train_graphs(gset: GraphSet, config: GraphConfig) -> dict[str, Any]:
    """Cross-validation over the fixed folds: train on each fold's training graphs (full batch)
    and report the accuracy on its test graphs after the last epoch."""
    accuracies = []
    for k, (train_ids, test_ids) in enumerate(gset.folds):
        seed_everything((config.seed + k) % (SEED_MAX + 1))
        x, a_hat, batch, y = batch_graphs([gset.graphs[i] for i in train_ids], config.sparse)
        tx, ta_hat, tbatch, ty = batch_graphs([gset.graphs[i] for i in test_ids], config.sparse)
        model = GraphClassifier(
            x.shape[1], len(gset.classes), config.hidden[0], 3, config.readout, config.dropout
        )
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        bar = tqdm(
            range(config.epochs),
            desc=f"fold {k + 1}",
            disable=not progress_bars_shown(config.progress),
            leave=False,
        )
        for epoch in bar:
            model.train()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x, a_hat, batch, len(train_ids)), y)
            if not math.isfinite(loss.item()):
                raise _diverged(config, epoch + 1, f" fold {k + 1}")
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracies.append(_accuracy(model(tx, ta_hat, tbatch, len(test_ids)), ty))
    return {
        "fold_acc": accuracies,
        "mean_acc": float(np.mean(accuracies)),
        "std_acc": float(np.std(accuracies)),
    }


def run_graph_training(
    config: GraphConfig,
    runs_root: Path = Path("runs"),
    name: str | None = None,
    overwrite: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Train on ``config.dataset`` into a new run folder (config.json, metrics.csv,
    checkpoint.pt, result.json, all written atomically).

    The config is checked when it is made; the run folder's place and name are checked and the
    data read before the folder is created. A run that fails (the loss becomes NaN, an error,
    Ctrl-C) leaves no folder behind, and with ``overwrite`` the run it was to replace is put
    back (see :func:`cnnlab.run_folder.new_run`)."""
    planned = run_folder.plan_run_dir(runs_root, name, f"gcn-{config.dataset}", overwrite)
    data = load_graph(config.dataset, config.data_dir)  # bad data fails before the folder
    with run_folder.new_run(planned) as run_dir:
        run_folder.write_text(
            run_dir / run_folder.CONFIG, json.dumps(dataclasses.asdict(config), indent=2)
        )
        if isinstance(data, GraphSet):
            result = train_graphs(data, config)
            history = [{"fold": i + 1, "test_acc": a} for i, a in enumerate(result["fold_acc"])]
            state = {"config": dataclasses.asdict(config), "result": result, "kind": "graphs"}
        else:
            node = train_nodes(data, config)
            history = node.history
            result = {
                "test_acc": node.test_acc,
                "val_acc": node.val_acc,
                "best_epoch": node.best_epoch,
                "epochs_run": len(history),
            }
            state = {
                "model": node.model.state_dict(),
                "config": dataclasses.asdict(config),
                "classes": data.classes,
                "result": result,
                "kind": "nodes",
                "in_features": data.x.shape[1],
            }
        run_folder.write_metrics(run_dir / run_folder.METRICS, history)
        run_folder.write_text(run_dir / "result.json", json.dumps(result, indent=2))
        run_folder.save_checkpoint(
            run_dir / run_folder.CHECKPOINT, state
        )  # last: marks the run complete
    return run_dir, result


def _saved_config(run_dir: Path, saved: Any) -> GraphConfig:
    known = {f.name for f in dataclasses.fields(GraphConfig)}
    if not isinstance(saved, dict) or not set(saved) <= known:
        unknown = sorted(set(saved) - known) if isinstance(saved, dict) else type(saved).__name__
        raise CnnlabError(
            f"{run_dir}: the checkpoint's config is not a GCN config ({unknown}); "
            "train the run again with cnnlab graph train"
        )
    return GraphConfig(**saved)


def load_node_model(run_dir: Path) -> tuple[GCN, GraphConfig, dict[str, Any]]:
    state = run_folder.load_checkpoint(run_dir / run_folder.CHECKPOINT, required=("kind", "config"))
    if state["kind"] != "nodes":
        raise CnnlabError(f"{run_dir}: not a node-classification GCN run")
    config = _saved_config(run_dir, state["config"])
    model = GCN(
        state["in_features"],
        len(state["classes"]),
        tuple(config.hidden),
        config.dropout,
        config.activation,
    )
    model.load_state_dict(state["model"])
    return model.eval(), config, state
