"""``cnnlab lessons [NAME]``: the course's concepts in teaching order, each with the command
that shows it (the index is :data:`cnnlab.lessons.LESSONS`)."""

from __future__ import annotations

import argparse
import difflib

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
    from ..lessons import LESSONS, lesson_text, lessons_markdown

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
