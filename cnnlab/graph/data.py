"""Graph data: the karate club, Cora and CiteSeer (Planetoid splits) and MUTAG, read from the
files in ``<data>/graphs`` with every field checked.

A graph is its node feature matrix ``X`` (``N x F``), its edges as a ``2 x E`` index (each
undirected edge stored in both directions) and labels for its nodes or for the whole graph.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._unpickle import RestrictedUnpickler
from ..data.datasets import data_roots
from ..errors import DataError, UnknownNameError

GRAPH_DATASETS = ("karate", "cora", "citeseer", "mutag")


@dataclass
class Graph:
    """One graph. ``edge_index[:, k] = (source, target)``; masks select labelled node sets."""

    x: torch.Tensor  # N x F float
    edge_index: torch.Tensor  # 2 x E long
    y: torch.Tensor  # N (node labels) or () (graph label)
    name: str = ""
    classes: list[str] = field(default_factory=list)
    train_mask: torch.Tensor | None = None
    val_mask: torch.Tensor | None = None
    test_mask: torch.Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        """Undirected edges (each is stored twice)."""
        return int(self.edge_index.shape[1]) // 2


@dataclass
class GraphSet:
    """Many small graphs with one label each, and fixed cross-validation folds."""

    graphs: list[Graph]
    classes: list[str]
    folds: list[tuple[list[int], list[int]]]  # (train indices, test indices) per fold
    name: str = ""


def _root(root: str | Path | None, folder: str) -> Path:
    looked = []
    for candidate, _why in data_roots(root):
        path = Path(candidate) / "graphs" / folder
        looked.append(str(path))
        if path.is_dir():
            return path
    raise DataError(
        f"graph data set {folder!r} not found; looked in {', '.join(looked)}. Put the "
        f"{folder}/ folder under <data>/graphs/ (or pass --data-dir)"
    )


def undirected(edges: np.ndarray, num_nodes: int, where: str) -> torch.Tensor:
    """``E x 2`` node pairs -> ``2 x 2E`` index with both directions, duplicates and
    self-loops removed; ids outside ``0..num_nodes-1`` are an error."""
    if edges.size and (edges.min() < 0 or edges.max() >= num_nodes):
        bad = edges[(edges < 0) | (edges >= num_nodes)][0]
        raise DataError(f"{where}: node id {bad} is out of range 0..{num_nodes - 1}")
    edges = edges[edges[:, 0] != edges[:, 1]]
    both = np.concatenate([edges, edges[:, ::-1]])
    both = np.unique(both, axis=0)
    return torch.as_tensor(both.T.copy(), dtype=torch.long)


# ------------------------------------------------------------------------------ karate club


def _read_csv(path: Path, columns: list[str]) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: file missing")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or [c.strip() for c in rows[0][: len(columns)]] != columns:
        raise DataError(f"{path}: expected a header starting with {','.join(columns)}")
    return rows[1:]


def _int(value: str, path: Path, line: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}, line {line}: {what} {value!r} is not a whole number") from None


def load_karate(
    root: str | Path | None = None, labelled: tuple[int, ...] = (0, 1, 32, 33)
) -> Graph:
    """Zachary's karate club: 34 members, 78 friendships, label = the club each member joined
    after the split (``Mr. Hi`` or ``Officer``). Features are one-hot node ids (as in Kipf &
    Welling's karate example). ``labelled`` nodes form the training set (the two leaders, 0
    and 33, and one follower of each); every other node is a test node."""
    folder = _root(root, "karate")
    nodes = _read_csv(folder / "karate_nodes.csv", ["node", "club"])
    clubs = sorted({row[1] for row in nodes})
    labels = np.zeros(len(nodes), dtype=np.int64)
    for line, row in enumerate(nodes, start=2):
        node = _int(row[0], folder / "karate_nodes.csv", line, "node id")
        if not 0 <= node < len(nodes):
            raise DataError(f"{folder / 'karate_nodes.csv'}, line {line}: node {node} out of range")
        labels[node] = clubs.index(row[1])
    pairs = []
    path = folder / "karate_edges.csv"
    for line, row in enumerate(_read_csv(path, ["source", "target"]), start=2):
        if len(row) < 2:
            raise DataError(f"{path}, line {line}: expected source,target")
        pairs.append((_int(row[0], path, line, "source"), _int(row[1], path, line, "target")))
    n = len(nodes)
    train = torch.zeros(n, dtype=torch.bool)
    train[list(labelled)] = True
    return Graph(
        x=torch.eye(n),
        edge_index=undirected(np.array(pairs, dtype=np.int64), n, str(path)),
        y=torch.as_tensor(labels),
        name="karate",
        classes=clubs,
        train_mask=train,
        val_mask=torch.zeros(n, dtype=torch.bool),
        test_mask=~train,
    )


# --------------------------------------------------------------------- Cora and CiteSeer


class _SparseRows:
    """Stand-in for ``scipy.sparse.csr_matrix`` inside the Planetoid pickles."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def toarray(self) -> np.ndarray:
        rows, cols = self._shape
        dense = np.zeros((rows, cols), dtype=np.float32)
        indptr, indices, data = self.indptr, self.indices, self.data
        row_of = np.repeat(np.arange(rows), np.diff(indptr))
        dense[row_of, indices] = data
        return dense


class _PlanetoidUnpickler(RestrictedUnpickler):
    """Only the handful of classes these files hold: no code from a file ever runs."""

    ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("scipy.sparse.csr", "csr_matrix"): _SparseRows,
        ("collections", "defaultdict"): defaultdict,
        ("__builtin__", "list"): list,
        ("builtins", "list"): list,
    }


def _unpickle(path: Path):
    if not path.is_file():
        raise DataError(
            f"{path}: file missing (Planetoid data needs x, y, tx, ty, allx, ally, "
            "graph and test.index)"
        )
    try:
        return _PlanetoidUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as error:
        raise DataError(f"{path}: not a readable Planetoid file ({error})") from None


PLANETOID_CLASSES = {
    "cora": [
        "Case_Based",
        "Genetic_Algorithms",
        "Neural_Networks",
        "Probabilistic_Methods",
        "Reinforcement_Learning",
        "Rule_Learning",
        "Theory",
    ],
    "citeseer": ["Agents", "AI", "DB", "IR", "ML", "HCI"],
}


def load_planetoid(name: str, root: str | Path | None = None) -> Graph:
    """Cora or CiteSeer with the standard split of Yang et al. 2016 (used by Kipf & Welling):
    20 labelled nodes per class for training, the next 500 for validation, the 1,000 listed
    in ``test.index`` for testing. Features are row-normalized bag-of-words vectors.
    CiteSeer's test index skips some nodes that have no features; they become zero rows."""
    folder = _root(root, name)
    parts = {
        k: _unpickle(folder / f"ind.{name}.{k}")
        for k in ("x", "y", "tx", "ty", "allx", "ally", "graph")
    }
    index_path = folder / f"ind.{name}.test.index"
    try:
        test_index = np.array([int(line) for line in index_path.read_text().split()])
    except (OSError, ValueError) as error:
        raise DataError(f"{index_path}: expected one node id per line ({error})") from None
    allx, tx = parts["allx"].toarray(), parts["tx"].toarray()
    ally, ty = np.asarray(parts["ally"]), np.asarray(parts["ty"])
    test_sorted = np.sort(test_index)
    if name == "citeseer":  # isolated test nodes: pad tx/ty to the full index range
        full = test_sorted.max() - test_sorted.min() + 1
        tx_full = np.zeros((full, tx.shape[1]), dtype=tx.dtype)
        ty_full = np.zeros((full, ty.shape[1]), dtype=ty.dtype)
        tx_full[test_sorted - test_sorted.min()] = tx
        ty_full[test_sorted - test_sorted.min()] = ty
        tx, ty = tx_full, ty_full
    features = np.vstack([allx, tx])
    labels = np.vstack([ally, ty])
    features[test_index] = features[test_sorted]
    labels[test_index] = labels[test_sorted]
    n = features.shape[0]
    graph = parts["graph"]
    pairs = [(int(s), int(t)) for s, targets in graph.items() for t in targets]
    edges = undirected(np.array(pairs, dtype=np.int64), n, str(folder / f"ind.{name}.graph"))
    sums = features.sum(axis=1, keepdims=True)
    features = np.divide(features, sums, out=np.zeros_like(features), where=sums > 0)
    y = labels.argmax(axis=1)
    train_count, val_count = parts["y"].shape[0], 500
    masks = []
    for chosen in (range(train_count), range(train_count, train_count + val_count), test_sorted):
        mask = torch.zeros(n, dtype=torch.bool)
        mask[list(chosen)] = True
        masks.append(mask)
    return Graph(
        torch.as_tensor(features, dtype=torch.float32),
        edges,
        torch.as_tensor(y),
        name,
        PLANETOID_CLASSES[name],
        *masks,
    )


# ----------------------------------------------------------------------------------- MUTAG


def load_mutag(root: str | Path | None = None) -> GraphSet:
    """MUTAG: 188 molecules (atoms = nodes, bonds = edges), labelled by whether they are
    mutagenic. Node features: one-hot atom tags. Folds: the 10 fixed splits in
    ``10fold_idx``."""
    folder = _root(root, "mutag")
    path = folder / "MUTAG.txt"
    if not path.is_file():
        raise DataError(f"{path}: file missing")
    raw = _read_mutag(path)
    all_tags = sorted({t for tags, *_ in raw for t in tags})
    labels = sorted({label for *_, label, _ in raw})
    graphs = []
    for tags, pairs, label, line in raw:
        x = torch.zeros(len(tags), len(all_tags))
        x[torch.arange(len(tags)), torch.as_tensor([all_tags.index(t) for t in tags])] = 1
        edges = undirected(pairs, len(tags), f"{path}, graph ending at line {line}")
        graphs.append(Graph(x, edges, torch.tensor(labels.index(label)), "mutag"))
    folds = _mutag_folds(folder, len(graphs))
    classes = ["non-mutagenic", "mutagenic"] if len(labels) == 2 else [str(v) for v in labels]
    return GraphSet(graphs, classes, folds, "mutag")


def _read_mutag(path: Path) -> list[tuple[list[int], np.ndarray, int, int]]:
    """Each molecule of ``MUTAG.txt`` as (atom tags, bond pairs, label, its last line)."""
    lines = path.read_text().splitlines()
    position = 0

    def numbers(expected: str) -> list[int]:
        nonlocal position
        if position >= len(lines):
            raise DataError(f"{path}: the file ends early (expected {expected})")
        line = lines[position]
        position += 1
        try:
            return [int(v) for v in line.split()]
        except ValueError:
            raise DataError(
                f"{path}, line {position}: {line!r} holds non-numeric fields (expected {expected})"
            ) from None

    (count,) = numbers("the number of graphs")[:1]
    raw = []
    for _ in range(count):
        header = numbers("'nodes label'")
        nodes, label = header[0], header[1]
        tags, pairs = [], []
        for node in range(nodes):
            row = numbers("'tag degree neighbours...'")
            tag, degree, neighbours = row[0], row[1], row[2 : 2 + row[1]]
            if len(neighbours) != degree:
                raise DataError(
                    f"{path}, line {position}: says {degree} neighbours, lists {len(neighbours)}"
                )
            tags.append(tag)
            pairs += [(node, t) for t in neighbours]
        raw.append((tags, np.array(pairs, dtype=np.int64).reshape(-1, 2), label, position))
    return raw


def _mutag_folds(folder: Path, count: int) -> list[tuple[list[int], list[int]]]:
    """The 10 fixed (train, test) splits of ``10fold_idx``, each index checked against
    ``count`` graphs."""
    folds = []
    for k in range(1, 11):
        split = []
        for kind in ("train", "test"):
            file = folder / "10fold_idx" / f"{kind}_idx-{k}.txt"
            if not file.is_file():
                raise DataError(f"{file}: fold file missing")
            ids = [int(v) for v in file.read_text().split()]
            if ids and (min(ids) < 0 or max(ids) >= count):
                raise DataError(f"{file}: graph index out of range 0..{count - 1}")
            split.append(ids)
        folds.append((split[0], split[1]))
    return folds


def load_graph(name: str, root: str | Path | None = None) -> Graph | GraphSet:
    if name == "karate":
        return load_karate(root)
    if name in ("cora", "citeseer"):
        return load_planetoid(name, root)
    if name == "mutag":
        return load_mutag(root)
    raise UnknownNameError(f"unknown graph data set {name!r}; known: {', '.join(GRAPH_DATASETS)}")
