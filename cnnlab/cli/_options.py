"""What the ``cnnlab`` commands share: the parser with one-line errors, the help formatter,
the ``-O key=value`` reader, the option groups many commands declare, and the epilogue."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import CnnlabError

if TYPE_CHECKING:
    from ..runs.sources import ModelSource


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``cnnlab train: error: ... (see cnnlab train --help)``.

    ``typed_options``: a parser of the same options with every default ``SUPPRESS`` (built by
    the same function); given one, parsing also sets ``args.given``, the destinations of the
    options typed on the command line (abbreviations and ``--x=v`` too), so settings from a
    recipe or a config file give way to exactly those."""

    def __init__(self, *args: Any, typed_options: argparse.ArgumentParser | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.typed_options = typed_options

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if self.typed_options is not None:
            typed, _ = self.typed_options.parse_known_args(args)
            parsed.given = set(vars(typed))
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where there is a default to show (not None, False or [])."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class EveryDefaultFormatter(argparse.HelpFormatter):
    """Shows every option's default: ``(default: X)``, ``none`` for None or [], ``off`` and
    ``on`` for switches, unless the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or "default" in text or not action.option_strings:
            return text
        value = action.default
        if isinstance(value, bool):  # a switch: on when its default is what it sets
            is_set = value if action.const is None else value == action.const
            shown = "on" if is_set else "off"
        else:
            shown = "none" if value in (None, []) else str(value)
        return f"{text} (default: {shown})".strip()


def option_value(text: str) -> tuple[str, Any]:
    """``"modern=true"`` -> ``("modern", True)``: the value is read as JSON where it is JSON,
    else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. modern=true")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def option_dict(text: str) -> dict[str, Any]:
    """``"pairs=8,skip=false"`` -> options, each read as ``-O key=value`` is."""
    options = {}
    for part in filter(None, text.split(",")):
        try:
            key, value = option_value(part.strip())
        except argparse.ArgumentTypeError:
            raise CnnlabError(f"model option {part!r}: expected key=value, e.g. pairs=8") from None
        options[key] = value
    return options


def add_run_options(parser: Any, help: str | None = None, default: Any = "runs") -> None:
    """``--runs-dir``: the folder that holds run folders (``parser``: a parser or a group)."""
    parser.add_argument("--runs-dir", default=default, help=help)


def add_data_options(parser: Any, help: str | None = None, default: Any = None) -> None:
    """``--data-dir``: where the data sets are (else $CNNLAB_DATA, else the user cache)."""
    parser.add_argument("--data-dir", default=default, help=help)


def add_model_option(parser: Any, help: str, default: Any = None, parse: bool = True) -> None:
    """``-O/--model-option KEY=VALUE``, repeatable: a model builder's option, read as JSON
    where it is JSON (``args.model_option``: a list of ``(key, value)``; with ``parse=False``
    the texts, for the command to read with :func:`option_value` and refuse as its own error).
    ``--option`` is kept as a hidden alias (``summary`` called it so)."""
    kind = {"action": "append", "metavar": "KEY=VALUE", **({"type": option_value} if parse else {})}
    default = [] if default is None else default
    parser.add_argument("-O", "--model-option", default=default, help=help, **kind)
    hidden = {"dest": "model_option", "default": default, "help": argparse.SUPPRESS}
    parser.add_argument("--option", **hidden, **kind)


def add_out_option(
    parser: argparse.ArgumentParser, default: Path | None = None, help: str | None = None
) -> None:
    """``--out``: the file a command writes."""
    parser.add_argument("--out", type=Path, default=default, help=help)


def wrote(path: Path) -> int:
    """The last words of a command that wrote a file: says where, and returns exit status 0."""
    print(f"wrote {path}")
    return 0


SOURCE_HELP = (
    "a run folder (or its name under --runs-dir), a model name from `cnnlab models` "
    "(untrained, seeded), torchvision:NAME (untrained, or --weights) or package.module:callable"
)


def add_source_options(p: argparse.ArgumentParser) -> None:
    """What a model that is not a run needs: its seed, ImageNet weights, its input."""
    p.add_argument("--seed", type=int, default=0, help="random weights of an untrained model")
    p.add_argument(
        "--weights",
        action="store_true",
        help="torchvision:NAME with its ImageNet weights (the torch cache; downloaded if missing)",
    )
    p.add_argument(
        "--input",
        default=None,
        metavar="CxSxS",
        help="input of a non-run model (default: its design's; 3x224x224 for module:callable)",
    )


def load_any(args: argparse.Namespace, notes_to_stderr: bool = False) -> ModelSource:
    """The model ``args.run`` names, as :func:`cnnlab.runs.sources.load_source` loads it; its
    notes printed."""
    from ..runs.sources import load_source

    source = load_source(args.run, Path(args.runs_dir), args.seed, args.weights, args.input)
    for note in source.notes or []:
        print(f"note: {note}", file=sys.stderr if notes_to_stderr else sys.stdout)
    return source


def input_image(
    source: ModelSource, text: str, data_dir: str | None, squash: bool = False
) -> tuple[Any, str, Any, str]:
    """The image a view reads, by the one image grammar of :func:`cnnlab.runs.sources.source_image`
    (``test:N``, ``DATASET:N`` or a file; conversion notes printed). Returns the uint8
    ``1 x C x H x W`` batch, a label for titles, the true class (or ``None``) and a file-name
    stem."""
    from ..runs.sources import source_image

    image, label, true, stem, notes = source_image(source, text, data_dir, squash)
    for note in notes:
        print(f"note: {text}: {note}")
    return image, label, true, stem


def add_view_arguments(
    q: argparse.ArgumentParser,
    image: bool,
    any_model: bool = True,
    out_help: str = "PNG to write",
    data_help: str = "data folder for test:N and mistakes",
) -> None:
    """The arguments of a ``show`` view: the model (any source, or a run only), the image when
    the view reads one, the source options, ``--runs-dir``, ``--out`` and ``--data-dir``."""
    if any_model:
        q.add_argument("run", metavar="SOURCE", help=SOURCE_HELP)
    else:
        q.add_argument("run", help="run folder, or its name under --runs-dir")
    if image:
        q.add_argument("image", help="PNG/JPEG file, or test:N for a run's test image N")
        q.add_argument(
            "--squash",
            action="store_true",
            help="resize the whole image to the model's square input (default: keep the aspect "
            "ratio, shorter side to the input size, then the centre)",
        )
    if any_model:
        add_source_options(q)
    add_run_options(q)
    add_out_option(q, help=out_help)
    add_data_options(q, data_help)
