"""The ``cnnlab`` command line. Every sub-command has ``--help``.

One module per command group (:mod:`.train`, :mod:`.catalog`, :mod:`.inspect`, :mod:`.show`,
:mod:`.graph`, :mod:`.transfer`, :mod:`.reproduce`, :mod:`.serve`), each with ``add_*`` functions
that declare its sub-commands; they share only :mod:`._options`. A new command goes into the
module of its group (or a new one) and its ``add_*`` function into :data:`COMMANDS` below.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import CnnlabError
from . import (
    backprop,
    catalog,
    export,
    graph,
    inspect,
    lessons,
    reproduce,
    run,
    serve,
    show,
    show_lessons,
    show_pictures,
    trace,
    train,
    transfer,
)
from ._options import Parser


def add_show_views(sub: argparse._SubParsersAction) -> None:
    """``cnnlab show`` with its views from :mod:`.show`, :mod:`.show_lessons` and
    :mod:`.show_pictures`."""
    views = show.add_show(sub)
    show_lessons.add_lesson_views(views)
    show_pictures.add_picture_views(views)


COMMANDS = (
    train.add_train,
    run.add_eval,
    run.add_predict,
    catalog.add_models,
    catalog.add_data,
    inspect.add_shapes,
    inspect.add_summary,
    inspect.add_example,
    add_show_views,
    inspect.add_filter,
    graph.add_graph,
    transfer.add_transfer,
    reproduce.add_reproduce,
    serve.add_serve,
    lessons.add_lessons,
    export.add_export,
    backprop.add_backprop,
    trace.add_trace,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cnnlab", description="Compute, train and see inside convolutional neural networks."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=version_line(),
        help="print cnnlab's version with torch's and Python's, then exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def version_line() -> str:
    """``cnnlab 0.1.0 (torch 2.14.1, torchvision 0.29.1, Python 3.12.3)``, read from the installed
    packages' metadata (no torch import: ``--version`` answers at once)."""
    from importlib import metadata

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    python = ".".join(str(part) for part in sys.version_info[:3])
    return (
        f"cnnlab {__version__} (torch {installed('torch')}, "
        f"torchvision {installed('torchvision')}, Python {python})"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cnnlab`` command; user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    together = False  # every rank reached the same end (under torchrun)
    try:
        code = args.handler(args)
        together = True
        return code
    except CnnlabError as err:
        together = True  # user errors are found on every rank alike (experiment.together)
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank stops; one speaks
            print(f"cnnlab {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnlab summary vgg16 | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    finally:
        _leave_process_group(together)


def _leave_process_group(together: bool) -> None:
    """Under torchrun, close the process group before exit, after the other ranks when they all
    got here (a rank leaving while another still talks to it, or gloo's threads outliving the
    group, aborts the process: "terminate called without an active exception", SIGABRT)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def one_line(err: BaseException) -> str:
    """An error's message as one line (its type's name where the message is empty)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


__all__ = ["build_parser", "main", "one_line", "version_line"]
