"""Graph convolution: normalization by hand, invariance and equivariance, the real-data
loaders and short real trainings."""

from __future__ import annotations

import json
import re

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError, DataError
from cnnlab.graph import (
    GCN,
    GCNConv,
    GraphClassifier,
    GraphConfig,
    add_self_loops,
    adjacency,
    batch_graphs,
    degree,
    load_karate,
    load_mutag,
    load_planetoid,
    normalized_adjacency,
    readout,
    train_graphs,
    train_nodes,
)
from cnnlab.graph.data import undirected

# a path 0 - 1 - 2 plus an isolated node 3
PATH = undirected(torch.tensor([[0, 1], [1, 2]]).numpy(), 4, "test")


def test_normalization_by_hand():
    a = adjacency(PATH, 4)
    assert a.tolist() == [[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    a_loops = add_self_loops(a)
    assert degree(a_loops).tolist() == [2, 3, 2, 1]
    a_hat = normalized_adjacency(PATH, 4)
    # entry (i, j) = 1 / sqrt(deg_i deg_j) for j in N(i) + {i}
    s6 = 1 / 6**0.5
    want = torch.tensor([[1 / 2, s6, 0, 0], [s6, 1 / 3, s6, 0], [0, s6, 1 / 2, 0], [0, 0, 0, 1.0]])
    assert torch.allclose(a_hat, want)
    assert torch.allclose(a_hat, a_hat.T)


def test_sparse_and_dense_give_the_same_results(data_dir):
    graph = load_planetoid("cora", data_dir)
    dense = normalized_adjacency(graph.edge_index, graph.num_nodes, sparse=False)
    sparse = normalized_adjacency(graph.edge_index, graph.num_nodes, sparse=True)
    assert sparse.is_sparse and torch.allclose(sparse.to_dense(), dense)
    torch.manual_seed(0)
    model = GCN(graph.x.shape[1], 7).eval()
    with torch.no_grad():
        a = model(graph.x, dense)
        b = model(graph.x.to_sparse(), sparse)
    assert torch.allclose(a, b, atol=1e-5)


def test_gcnconv_is_equivariant_under_node_relabeling():
    torch.manual_seed(0)
    edges = undirected(torch.randint(0, 12, (30, 2)).numpy(), 12, "random")
    x = torch.randn(12, 5)
    conv = GCNConv(5, 3)
    perm = torch.randperm(12)
    inverse = torch.argsort(perm)
    relabeled = inverse[edges]  # node i is called inverse[i] after relabeling
    out = conv(x, normalized_adjacency(edges, 12))
    out_perm = conv(x[perm], normalized_adjacency(relabeled, 12))
    assert torch.allclose(out_perm, out[perm], atol=1e-6)


@pytest.mark.parametrize("how", ["mean", "sum", "max"])
def test_readouts_are_permutation_invariant_and_per_graph(how):
    torch.manual_seed(0)
    h = torch.randn(7, 4)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    out = readout(h, batch, 2, how)
    reference = {"mean": torch.mean, "sum": torch.sum, "max": lambda t, dim: t.amax(dim)}[how]
    assert torch.allclose(out[0], reference(h[:3], dim=0))
    assert torch.allclose(out[1], reference(h[3:], dim=0))
    perm = torch.randperm(7)
    assert torch.allclose(readout(h[perm], batch[perm], 2, how), out)


def test_graph_classifier_ignores_node_order(data_dir):
    data = load_mutag(data_dir)
    torch.manual_seed(0)
    model = GraphClassifier(data.graphs[0].x.shape[1], 2).eval()
    x, a_hat, batch, _ = batch_graphs(data.graphs[:5])
    perm = torch.randperm(x.shape[0])
    inverse = torch.argsort(perm)
    edges = torch.cat(
        [
            g.edge_index + sum(h.num_nodes for h in data.graphs[:i])
            for i, g in enumerate(data.graphs[:5])
        ],
        dim=1,
    )
    a_perm = normalized_adjacency(inverse[edges], x.shape[0])
    with torch.no_grad():
        assert torch.allclose(
            model(x, a_hat, batch, 5), model(x[perm], a_perm, batch[perm], 5), atol=1e-5
        )


def test_real_loaders(data_dir):
    karate = load_karate(data_dir)
    assert karate.num_nodes == 34 and karate.num_edges == 78
    assert karate.classes == ["Mr. Hi", "Officer"] and karate.y.bincount().tolist() == [17, 17]
    assert karate.train_mask.sum() == 4 and karate.y[0] != karate.y[33]
    cora = load_planetoid("cora", data_dir)
    assert (cora.num_nodes, cora.x.shape[1], len(cora.classes)) == (2708, 1433, 7)
    assert [int(m.sum()) for m in (cora.train_mask, cora.val_mask, cora.test_mask)] == [
        140,
        500,
        1000,
    ]
    assert cora.num_edges == 5278  # the usual undirected count
    assert (cora.y[cora.train_mask].bincount() == 20).all()  # 20 labelled nodes per class
    assert torch.allclose(cora.x.sum(1)[cora.x.sum(1) > 0], torch.ones(1))  # row-normalized
    citeseer = load_planetoid("citeseer", data_dir)
    assert (citeseer.num_nodes, len(citeseer.classes)) == (3327, 6)
    assert int(citeseer.test_mask.sum()) == 1000
    mutag = load_mutag(data_dir)
    assert len(mutag.graphs) == 188 and len(mutag.folds) == 10
    assert sum(int(g.y) for g in mutag.graphs) == 125  # 125 mutagenic, 63 not
    for train_ids, test_ids in mutag.folds:
        assert not set(train_ids) & set(test_ids) and len(train_ids) + len(test_ids) == 188


@pytest.mark.parametrize(
    "edges, message",
    [
        ("source,target,weight\n0,1,4\n0,x,2\n", "line 3: target 'x' is not a whole number"),
        ("source,target,weight\n0,1,4\n0,40,2\n", "node id 40 is out of range 0..33"),
        ("from,to\n0,1\n", "expected a header starting with source,target"),
    ],
)
def test_malformed_edge_lists_are_named(data_dir, tmp_path, edges, message):
    folder = tmp_path / "graphs" / "karate"
    folder.mkdir(parents=True)
    (folder / "karate_nodes.csv").write_text(
        (data_dir / "graphs/karate/karate_nodes.csv").read_text()
    )
    (folder / "karate_edges.csv").write_text(edges)
    with pytest.raises(DataError, match=message):
        load_karate(tmp_path)


def test_malformed_mutag_is_named(tmp_path):
    folder = tmp_path / "graphs" / "mutag"
    folder.mkdir(parents=True)
    (folder / "MUTAG.txt").write_text("1\n2 1\n0 1 1\n0 one 0\n")
    with pytest.raises(DataError, match="line 4: '0 one 0' holds non-numeric fields"):
        load_mutag(tmp_path)
    (folder / "MUTAG.txt").write_text("1\n2 1\n0 1 5\n0 1 0\n")
    with pytest.raises(DataError, match="node id 5 is out of range 0..1"):
        load_mutag(tmp_path)


def test_planetoid_loader_refuses_unknown_pickled_classes(data_dir, tmp_path):
    import pickle

    folder = tmp_path / "graphs" / "cora"
    folder.mkdir(parents=True)
    for f in (data_dir / "graphs" / "cora").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "ind.cora.x").write_bytes(pickle.dumps(__import__("os").system, protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        load_planetoid("cora", tmp_path)


def test_two_layer_gcn_learns_cora(data_dir):
    result = train_nodes(load_planetoid("cora", data_dir), GraphConfig(progress=False))
    assert result.test_acc > 0.79  # paper: 81.5%; benchmarks/graph_gcn.py measures 10 seeds
    assert result.history[-1]["train_acc"] > 0.9


def test_karate_from_four_labels(data_dir):
    karate = load_karate(data_dir)
    result = train_nodes(karate, GraphConfig.for_dataset("karate", progress=False))
    assert result.test_acc >= 0.9  # of the 30 unlabelled members
    assert result.model.embedding.shape == (34, 2)


def test_graph_commands(data_dir, tmp_path, capsys):
    base = ["--data-dir", str(data_dir), "--runs-dir", str(tmp_path), "--no-progress"]
    assert main(["graph", "train", "--dataset", "karate", "--name", "k", *base]) == 0
    assert "test accuracy" in capsys.readouterr().out
    run = tmp_path / "k"
    assert {p.name for p in run.iterdir()} >= {
        "config.json",
        "metrics.csv",
        "checkpoint.pt",
        "result.json",
    }
    assert json.loads((run / "result.json").read_text())["test_acc"] >= 0.9
    assert main(["graph", "train", "--dataset", "karate", "--name", "k", *base]) == 2
    assert "already exists" in capsys.readouterr().err  # never overwritten silently
    out = tmp_path / "karate.png"
    assert main(["graph", "show", str(run), "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert out.stat().st_size > 20_000
    assert (
        main(["graph", "train", "--dataset", "mutag", "--epochs", "5", "--name", "m", *base]) == 0
    )
    assert "10-fold test accuracy" in capsys.readouterr().out
    assert main(["graph", "train", "--dataset", "pubmed", *base]) == 2


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "options, message",
    [
        (["--lr", "nan"], "lr=nan: expected a finite number"),
        (["--lr", "inf"], "lr=inf: expected a finite number"),
        (["--lr", "1e308"], "lr=1e+308: expected a finite number in (0, 100]"),
        (["--lr", "0"], "lr=0.0: expected"),
        (["--hidden", "-4"], "hidden=[-4]: expected one or more layer sizes"),
        (["--hidden", "0"], "hidden=[0]: expected"),
        (["--hidden", "4,0"], "hidden=[4, 0]: expected"),
        (["--hidden", "100000"], "each an integer 1..65536"),
        (["--hidden", ""], "--hidden '': expected sizes like 16 or 4,2"),
        (["--hidden", "4,x"], "--hidden '4,x': expected sizes"),
        (["--epochs", "0"], "epochs=0: expected a positive integer"),
        (["--dropout", "1"], "dropout=1.0: expected 0 <= dropout < 1"),
        (["--dropout", "nan"], "dropout=nan: expected"),
        (["--dropout", "-0.1"], "dropout=-0.1: expected"),
        (["--seed", "-1"], "seed=-1: expected an integer 0..4294967295"),
        (["--seed", "99999999999"], "seed=99999999999: expected"),
        (["--name", "n" * 300], "300 bytes long"),
        (["--runs-dir", "a-file/runs"], "is a file, not a folder"),
        (["--dataset", "pubmed"], "--dataset 'pubmed': expected one of"),
    ],
)
def test_graph_train_refuses_bad_options_before_writing(
    options, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "runs").mkdir()
    before = _tree(tmp_path)
    assert main(["graph", "train", "--dataset", "karate", "--no-progress", *options]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err  # one line
    assert "Traceback" not in err
    assert _tree(tmp_path) == before  # no run folder, nothing else either


def test_graph_config_checks_every_setting():
    GraphConfig(hidden=[1], dropout=0.0, patience=0, seed=2**32 - 1, weight_decay=0.0)  # edges
    bad = [
        ({"weight_decay": float("nan")}, "weight_decay=nan"),
        ({"weight_decay": -1e-4}, "weight_decay=-0.0001"),
        ({"patience": -1}, "patience=-1"),
        ({"activation": "gelu"}, "activation='gelu': expected relu or tanh"),
        ({"hidden": []}, "hidden=[]"),
        ({"hidden": [True]}, "hidden=[True]"),
        ({"epochs": 2.5}, "epochs=2.5"),
        ({"readout": "median"}, "readout='median'"),
    ]
    for overrides, message in bad:
        with pytest.raises(CnnlabError, match=re.escape(message)):
            GraphConfig(**overrides)


def _karate_with_nan_features(data_dir):
    graph = load_karate(data_dir)
    graph.x = graph.x.clone()
    graph.x[0, 0] = float("nan")
    return graph


def test_graph_training_stops_when_the_loss_is_nan(data_dir, tmp_path, monkeypatch, capsys):
    import cnnlab.graph.train as graph_train

    monkeypatch.chdir(tmp_path)
    config = GraphConfig.for_dataset("karate", progress=False)
    with pytest.raises(CnnlabError, match="epoch 1: the training loss became NaN or infinite"):
        train_nodes(_karate_with_nan_features(data_dir), config)
    base = ["graph", "train", "--dataset", "karate", "--data-dir", str(data_dir), "--no-progress"]
    assert main([*base, "--name", "k"]) == 0  # a good run to be replaced
    saved = {p.name: p.read_bytes() for p in (tmp_path / "runs" / "k").iterdir()}
    before = _tree(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(graph_train, "load_graph", lambda *a: _karate_with_nan_features(data_dir))
    assert main([*base, "--name", "k", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "karate, epoch 1: the training loss became NaN or infinite with lr 0.01" in err
    assert err.count("\n") == 1 and "Lower --lr" in err
    assert _tree(tmp_path) == before  # the old run is back, untouched; no new folder
    assert {p.name: p.read_bytes() for p in (tmp_path / "runs" / "k").iterdir()} == saved
    assert main([*base]) == 2 and _tree(tmp_path) == before  # a fresh name leaves nothing


def test_graph_classification_stops_when_the_loss_is_nan(data_dir):
    mutag = load_mutag(data_dir)
    for graph in mutag.graphs:
        graph.x = graph.x * float("nan")
    config = GraphConfig.for_dataset("mutag", progress=False, epochs=2)
    with pytest.raises(CnnlabError, match="mutag fold 1, epoch 1: the training loss became NaN"):
        train_graphs(mutag, config)


def test_graph_runs_seed_like_image_training(data_dir):
    import cnnlab.graph.train as graph_train
    from cnnlab.train import distributed

    assert graph_train.seed_everything is distributed.seed_everything
    assert not hasattr(graph_train, "seed_all")
    karate = load_karate(data_dir)
    config = GraphConfig.for_dataset("karate", progress=False, epochs=20, seed=2**32 - 1)
    first, again = train_nodes(karate, config), train_nodes(karate, config)
    assert first.history == again.history  # the largest seed works and repeats


def test_a_graph_checkpoint_with_a_foreign_config_is_refused(data_dir, tmp_path):
    from cnnlab import run_folder
    from cnnlab.graph.train import load_node_model

    for config in ("cora", {"dataset": "karate", "hidden": [4, 2], "learning_rate": 1}):
        run_folder.save_checkpoint(
            tmp_path / run_folder.CHECKPOINT, {"kind": "nodes", "config": config}
        )
        with pytest.raises(CnnlabError, match="the checkpoint's config is not a GCN config"):
            load_node_model(tmp_path)
