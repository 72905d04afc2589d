"""``cnnlab eval`` and ``cnnlab predict``: a finished run (or any model) on its test set and on
images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CnnlabError
from ._options import SOURCE_HELP, add_data_options, add_run_options, add_source_options, load_any


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="test a trained run", description="Evaluate a run's model on its test set."
    )
    p.add_argument("run", help="run folder, or its name under --runs-dir")
    add_run_options(p)
    add_data_options(p, "data folder (else the run's, $CNNLAB_DATA)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from ..run_folder import kept_checkpoint, kept_note
    from ..runs.load import evaluate_run, load_run

    trained = load_run(args.run, Path(args.runs_dir))
    result = evaluate_run(trained, args.data_dir)
    if args.json:
        checkpoint = kept_checkpoint(trained.run_dir).name  # best.pt with --keep best
        print(json.dumps({**result.to_dict(), "checkpoint": checkpoint}, indent=2))
        return 0
    config = trained.config
    print(f"{trained.run_dir}: {config.model} after {trained.epoch} epochs, {config.dataset} test")
    for note in kept_note(trained.run_dir, trained.epoch) or []:
        print(f"note: {note}")
    print(
        f"test loss {result.loss:.4f}   test accuracy {result.accuracy:.2%} "
        f"({result.right}/{result.images})"
    )
    for name, value in result.per_class.items():
        print(f"  {name:>12}  {value:7.2%}")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files with a trained run or any model",
        description="Print the top-k classes for each image. Images are converted to the "
        "model's channels and resized to its input size (shorter side, then the centre; "
        "--squash: the whole image), with a notice.",
    )
    p.add_argument("run", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument("images", nargs="+", help="files, test:N or DATASET:N (e.g. mnist:1)")
    add_source_options(p)
    add_run_options(p)
    add_data_options(p, "data folder for test:N and DATASET:N")
    p.add_argument("-k", "--top-k", type=int, default=3)
    p.add_argument(
        "--squash",
        action="store_true",
        help="resize the whole image to the model's square input (default: keep the aspect "
        "ratio, shorter side to the input size, then the centre)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    import torch

    from ..runs.load import predict
    from ..runs.sources import source_image

    if args.top_k < 1:
        raise CnnlabError(f"--top-k {args.top_k}: expected a positive number")
    trained = load_any(args, notes_to_stderr=args.json)
    k = min(args.top_k, len(trained.classes))
    batch = [source_image(trained, text, args.data_dir, args.squash) for text in args.images]
    probabilities = predict(trained, torch.cat([image for image, *_ in batch]))
    results = []
    for path, (_, label, true, _, notes), row in zip(args.images, batch, probabilities):
        top = row.topk(k)
        results.append(
            {
                "image": path,
                "label": label,
                "true": None if true is None else trained.classes[true],
                "notes": notes,
                "top": [
                    {"class": trained.classes[i], "index": int(i), "probability": float(p)}
                    for p, i in zip(top.values, top.indices)
                ],
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for item in results:
        notes = f"  ({'; '.join(item['notes'])})" if item["notes"] else ""
        named = item["label"] if item["label"] != Path(item["image"]).name else item["image"]
        print(f"{named}{notes}")
        for rank, guess in enumerate(item["top"], 1):
            print(f"  {rank}. {guess['class']:<14} {guess['probability']:7.2%}")
    return 0
