"""User-facing errors.

Every error that reaches a user names the bad value, what was expected, and how to fix it.
The CLI turns a :class:`CnnlabError` into one line on stderr and exit code 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CnnlabError(Exception):
    """An error caused by the user's input (a name, a file, a setting), not by cnnlab."""


class DataError(CnnlabError):
    """A data set is missing, corrupt, or not what it claims to be."""


class UnknownNameError(CnnlabError, KeyError):
    """A model, data set or layer name that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ShapeError(CnnlabError):
    """A layer that does not fit its input; the message shows the formula with the numbers."""


class RunFolderError(CnnlabError):
    """A run folder that is missing, incomplete, or would be overwritten."""


def reason(err: BaseException) -> str:
    """An exception as one short line: its type, and its message with line breaks folded."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def first_line(err: BaseException, default: str = "", limit: int | None = None) -> str:
    """The first non-empty line of an exception's message (``default`` when it has none), cut
    to ``limit`` characters: how a foreign error (torch's, a user's model's) is quoted in one
    of cnnlab's one-line messages."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else default
    return text[:limit] if limit else text
