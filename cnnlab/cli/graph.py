"""``cnnlab graph train`` and ``graph show``: graph convolutional networks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from ..outputs import check_output_file
from ._options import add_data_options, add_out_option, add_run_options, wrote


def add_graph(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "graph",
        help="graph convolutional networks: train and show",
        description="GCNs (Kipf & Welling 2017) on the karate club, Cora, CiteSeer and MUTAG.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("train", help="train a GCN into a run folder")
    q.add_argument("--dataset", default="cora", help="karate, cora, citeseer or mutag")
    add_data_options(q)
    q.add_argument("--epochs", type=int, default=None, help="at least 1 (default: per data set)")
    q.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam's learning rate, finite, in (0, 100] (default: 0.01)",
    )
    q.add_argument(
        "--hidden", default=None, help="hidden layer sizes, each 1..65536, e.g. 16 or 4,2"
    )
    q.add_argument("--dropout", type=float, default=None, help="0 <= p < 1 (default: 0.5)")
    q.add_argument("--seed", type=int, default=0, help="0..2**32-1")
    q.add_argument("--dense", action="store_true", help="dense adjacency instead of sparse")
    q.add_argument(
        "--readout",
        choices=("mean", "sum", "max"),
        default=None,
        help="graph classification (mutag): how a graph's node vectors become one vector: "
        "mean (default, the course's choice), sum (= mean x node count) or max",
    )
    add_run_options(q)
    q.add_argument("--name", default=None)
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(handler=_graph_train)
    q = actions.add_parser("show", help="draw the karate club by predicted class and embedding")
    q.add_argument("run", nargs="?", help="a karate run folder (default: train one now)")
    add_data_options(q)
    add_run_options(q)
    add_out_option(q, Path("karate.png"))
    q.set_defaults(handler=_graph_show)


def _graph_config(args: argparse.Namespace):
    from ..graph import GraphConfig

    overrides: dict[str, Any] = {
        "seed": args.seed,
        "data_dir": args.data_dir,
        "progress": not args.no_progress,
        "sparse": not args.dense,
    }
    for key in ("epochs", "lr", "dropout", "readout"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.hidden is not None:
        try:
            overrides["hidden"] = [int(v) for v in args.hidden.split(",")]
        except ValueError:
            raise CnnlabError(f"--hidden {args.hidden!r}: expected sizes like 16 or 4,2") from None
    return GraphConfig.for_dataset(args.dataset, **overrides)  # checks every value


def _graph_train(args: argparse.Namespace) -> int:
    from ..graph import GRAPH_DATASETS, run_graph_training

    if args.dataset not in GRAPH_DATASETS:
        raise CnnlabError(
            f"--dataset {args.dataset!r}: expected one of {', '.join(GRAPH_DATASETS)}"
        )
    if args.readout is not None and args.dataset != "mutag":
        raise CnnlabError(
            f"--readout {args.readout}: {args.dataset} is node classification (one label per "
            "node, no readout); the readout is for graph classification: --dataset mutag"
        )
    config = _graph_config(args)
    if args.dataset == "mutag":
        from ..graph.train import READOUT_TEXT

        print(f"readout {config.readout}: each graph's vector is {READOUT_TEXT[config.readout]}")
    run_dir, result = run_graph_training(config, Path(args.runs_dir), args.name, args.overwrite)
    if "mean_acc" in result:
        folds = " ".join(f"{a:.2f}" for a in result["fold_acc"])
        print(
            f"{args.dataset} (readout {config.readout}): 10-fold test accuracy "
            f"{result['mean_acc']:.2%} "
            f"+- {result['std_acc']:.2%} (folds: {folds})"
        )
    else:
        val = result["val_acc"]
        val_text = f"validation {val:.2%}, " if val == val else ""  # NaN: no validation set
        print(
            f"{args.dataset}: test accuracy {result['test_acc']:.2%} ({val_text}weights of "
            f"epoch {result['best_epoch']} of {result['epochs_run']})"
        )
    print(f"run folder: {run_dir}")
    return 0


def _graph_show(args: argparse.Namespace) -> int:
    import torch

    from .. import run_folder
    from ..graph import GraphConfig, load_karate, normalized_adjacency, train_nodes
    from ..graph.plots import plot_karate
    from ..graph.train import load_node_model

    check_output_file(args.out, "--out", (".png",))
    graph = load_karate(args.data_dir)
    if args.run:
        model, config, _ = load_node_model(run_folder.resolve_run(args.run, Path(args.runs_dir)))
        if config.dataset != "karate":
            raise CnnlabError(f"{args.run} is a {config.dataset} run; graph show draws karate")
    else:
        config = GraphConfig.for_dataset("karate", data_dir=args.data_dir, progress=False)
        model = train_nodes(graph, config).model
    a_hat = normalized_adjacency(graph.edge_index, graph.num_nodes, config.sparse)
    with torch.no_grad():
        logits = model(graph.x, a_hat)
    if model.embedding is None or model.embedding.shape[1] != 2:
        raise CnnlabError(
            f"the model's last hidden layer has {getattr(model.embedding, 'shape', ['?', '?'])[1]} "
            "units; train with --hidden ending in 2 (e.g. 4,2) to draw a 2-D embedding"
        )
    predicted = logits.argmax(1)
    test = graph.test_mask
    accuracy = float((predicted[test] == graph.y[test]).float().mean())
    print(
        f"karate: {accuracy:.2%} of the {int(test.sum())} unlabelled members placed in the "
        f"right club from {int(graph.train_mask.sum())} labelled ones"
    )
    title = f"GCN on Zachary's karate club: {accuracy:.0%} of unlabelled members right"
    plot_karate(graph, predicted, model.embedding, args.out, title)
    return wrote(args.out)
