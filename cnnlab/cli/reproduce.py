"""``cnnlab reproduce``: rerun the classic experiments against their published figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CnnlabError
from ..outputs import check_output_file
from ._options import add_data_options, add_out_option, add_run_options, wrote


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="rerun the course's experiments with the course's recipes",
        description="Train the course's experiments (E1 LeNet-5 on MNIST, E2 ReLU vs tanh as "
        "in AlexNet's Figure 1, E4-E6 the Keras CIFAR-10 stacks, E7/E8 the PyTorch "
        "Fashion-MNIST DNN and CNN) with the material's own recipes, and write a Markdown "
        "table, a JSON file and one PNG per experiment that overlays the material's logged "
        "figures and ours. --quick (small subsets, one epoch) takes a few minutes on 2 CPU "
        "cores; the full mode says first how long each experiment will take on this device "
        "and shows a progress bar.",
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", help="experiment key (repeat); default: all")
    p.add_argument(
        "--train-subset",
        type=int,
        default=None,
        metavar="N",
        help="keep each recipe but train on N training images drawn at random (seeded, so "
        "the same N images every time): a slow machine's stand-in for the full run; the "
        "report says so",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue each experiment's newest run of the same recipe under --runs-dir "
        "(or read it, when it finished) instead of starting again; kept Keras results are "
        "reused too",
    )
    p.add_argument(
        "--keras",
        action="store_true",
        help="also run the course's own Keras code for E4-E6 on the same images (Keras 3 on "
        "torch: pip install 'cnnlab[keras]'; about 2x cnnlab's time): the report's middle "
        "column",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the report already at --out for the experiments this call "
        "does not run (each with the date, commit and CPU it was measured on), so that a "
        "report grows one experiment at a time",
    )
    add_out_option(p, Path("reproduce.md"))
    add_run_options(p)
    add_data_options(p)
    p.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from ..course.report import kept_rows, merge_rows, write_report
    from ..course.reproduce import KEYS, run

    keys = KEYS
    unknown = [k for k in args.only or [] if k not in keys]
    if unknown:
        raise CnnlabError(f"--only {unknown[0]!r}: experiments are {', '.join(keys)}")
    if args.train_subset is not None and args.train_subset < 1:
        raise CnnlabError(
            f"--train-subset {args.train_subset}: expected a positive number of training images"
        )
    check_output_file(args.out, "--out", (".md",))  # before minutes of training
    kept = kept_rows(Path(args.out), args.quick, args.train_subset) if args.merge else []
    rows = run(
        args.quick,
        Path(args.runs_dir),
        args.data_dir,
        args.only,
        progress=not args.quick,
        train_subset=args.train_subset,
        resume=args.resume,
        keras=args.keras,
    )
    print(write_report(merge_rows(kept, rows, keys), args.quick, args.out))
    return wrote(args.out)
