"""``cnnlab lessons [NAME]``: the course's concepts in teaching order, each with the command
that shows it (the index is :data:`cnnlab.lessons.LESSONS`)."""

from __future__ import annotations

import argparse
import difflib

from ..course.lessons import LESSONS
from ..course.lessons.lesson import Lesson
from ..errors import UnknownNameError


def add_lessons(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lessons",
        help="the course's lessons in teaching order, each with the command that shows it",
        description="Print the lesson index (every concept of the course, in teaching order, "
        "with the one command that shows it), or one lesson in full with what to look for.",
    )
    p.add_argument("name", nargs="?", default=None, help="a lesson's name (see the index)")
    p.add_argument(
        "--markdown", action="store_true", help="print the index as docs/lessons.md holds it"
    )
    p.set_defaults(handler=_lessons)


def _lessons(args: argparse.Namespace) -> int:

    if args.markdown:
        print(lessons_markdown(), end="")
        return 0
    names = [item.name for item in LESSONS]
    if args.name is not None:
        if args.name not in names:
            close = difflib.get_close_matches(args.name, names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"no lesson named {args.name!r}.{hint} Run `cnnlab lessons` for the index"
            )
        number = names.index(args.name) + 1
        print(lesson_text(LESSONS[number - 1], number))
        return 0
    part = None
    for number, item in enumerate(LESSONS, start=1):
        if item.part != part:
            part = item.part
            print(f"\n{part}")
        coming = "  (coming)" if item.pending else ""
        print(f"{number:>3}. {item.name:<24} {item.command}{coming}")
    print("\n`cnnlab lessons NAME` says what to look for; docs/lessons.md holds the same index.")
    return 0


def lesson_text(item: Lesson, number: int) -> str:
    """One lesson in full, as ``cnnlab lessons NAME`` prints it."""
    lines = [f"{number}. {item.title} [{item.name}, {item.part}]", f"   $ {item.command}"]
    if item.pending:
        lines.append("   (not available yet: this feature is being added)")
    lines.append(f"   look for: {item.look_for}")
    if item.explorer:
        lines.append(f"   also in the explorer: {item.explorer}")
    return "\n".join(lines)


def lessons_markdown() -> str:
    """``docs/lessons.md``: the index as Markdown, one table per part."""
    out = [
        "# Lessons",
        "",
        "Every concept of the course, in teaching order, with the one command that shows it",
        "and what to look for. Generated from `cnnlab/course/lessons/` by",
        "`cnnlab lessons --markdown > docs/lessons.md`; `cnnlab lessons NAME` prints one.",
        "Run the training lessons first: later commands read the runs `lenet` (LeNet-5 on",
        "MNIST) and `cifar` (CIFAR-10). Photos come from `$CNNLAB_DATA/photos`.",
    ]
    part = None
    for number, item in enumerate(LESSONS, start=1):
        if item.part != part:
            part = item.part
            out += [
                "",
                f"## {part[0].upper()}{part[1:]}",
                "",
                "| # | lesson | command | look for |",
                "|---|---|---|---|",
            ]
        note = " *(coming)*" if item.pending else ""
        also = f" Explorer: {item.explorer}." if item.explorer else ""
        out.append(
            f"| {number} | {item.title} (`{item.name}`){note} | `{item.command}` | "
            f"{item.look_for}.{also} |"
        )
    return "\n".join(out) + "\n"
