"""How a :class:`~cnnlab.train.config.TrainConfig` field is declared: :func:`option` holds
its default, its check and its ``cnnlab train`` flag in one place, and the small checks the
fields share."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import field
from typing import Any


def is_count(value: Any, low: int, high: int | None = None) -> bool:
    """An integer (not a bool) with ``low <= value`` and, when given, ``value <= high``."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def is_real_in(value: Any, low: float, high: float) -> bool:
    """A real number (not NaN, not inf) with ``low <= value <= high``."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def option(
    default: Any = None,
    *,
    help: str = "",
    group: str | None = None,
    check: Callable[[Any, Any], bool] | None = None,
    expected: str | Callable[[Any], str] = "",
    choices: tuple[Any, ...] | None = None,
    check_choices: bool = True,
    switch: str | None = None,
    flag: str | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A :class:`TrainConfig` field with everything about it in one place.

    ``help`` and ``group`` make it a ``cnnlab train`` option (``--the-name`` unless ``flag``
    says otherwise; no group: no flag); ``choices`` are the values argparse accepts and, unless
    ``check_choices`` is false, the values the check accepts; ``check(value, config)`` is the
    rule ``__post_init__`` applies (a ``None`` default means None is always accepted) and
    ``expected`` (text, or text from the config) what its error says was expected. ``switch``:
    ``"on"`` (``--x`` sets true), ``"both"`` (``--x``/``--no-x``) or ``"off"`` (the flag sets
    false). ``parse`` reads the flag's text; ``factory`` makes a mutable default.
    """
    if switch in ("on", "off") and default is not (switch == "off"):
        raise ValueError(f"a switch {switch!r} needs the default {switch == 'off'}")
    if choices is not None and check is None and check_choices:

        def check(value: Any, config: Any) -> bool:
            return value in choices

        expected = expected or ", ".join(map(str, choices))
    meta = {
        "help": help,
        "group": group,
        "check": check,
        "expected": expected,
        "choices": choices,
        "switch": switch,
        "flag": flag,
        "metavar": metavar,
        "parse": parse,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def count(low: int, high: int | None = None) -> Callable[[Any, Any], bool]:
    return lambda value, config: is_count(value, low, high)


def real(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Any:
    def check(value: Any, config: Any) -> bool:
        return (
            is_real_in(value, low, high)
            and not (open_low and value == low)
            and not (open_high and value == high)
        )

    return check


def boolean(value: Any, config: Any) -> bool:
    return isinstance(value, bool)


def class_list(value: Any, config: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) >= 2
        and all(isinstance(c, str) and c for c in value)
        and len(set(value)) == len(value)
    )


def comma_list(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


POSITIVE = "a positive integer"
BOOLEAN = "true or false"
