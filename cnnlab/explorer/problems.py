"""Error answers as one readable sentence: FastAPI's list of validation problems, its bare
"Not Found" / "Method Not Allowed" and Starlette's body-parsing errors, turned into what was
wrong, what was expected and what to do (the page shows ``detail`` as it is); the
:class:`Refusal` the explorer raises; and :func:`shorten_echoes`, which cuts any user value an
answer repeats to a short prefix with its length."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


class Refusal(Exception):
    """A request the explorer will not answer: ``status`` (404, 413, 415, 422, ...) and why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


# pydantic's error type -> what was expected
EXPECTED = {
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "text",
    "list_type": "a list",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "dict_type": "a JSON object",
    "model_attributes_type": "a JSON object",
    "model_type": "a JSON object",
}
WHERE = {"body": "the request body", "query": "query parameter", "path": "path parameter"}
MAX_ECHO = 40  # characters of a rejected value repeated in the answer
ECHO_PREFIX = 12  # characters kept of a longer one
# a quoted value (as repr() writes it; not an apostrophe inside a word) or a long bare token
_QUOTED = re.compile(r"""(?<![\w])(['"])((?:(?!\1)[^\\]|\\.)*)\1(?![\w])""")
_BARE = re.compile(rf"\S{{{3 * MAX_ECHO},}}")
# what Starlette says when it cannot parse a body (FastAPI's catch-all, python-multipart's)
PARSE_ERRORS = ("There was an error parsing the body", "multipart", "Content-Disposition")


def echo(text: str) -> str:
    """A user's value as an answer repeats it: quoted, cut to a prefix with its length when
    longer than :data:`MAX_ECHO` (``'aaaaaaaaaaaa...' (10000 characters)``)."""
    if len(text) <= MAX_ECHO:
        return repr(text)
    return f"'{repr(text[:ECHO_PREFIX])[1:-1]}...' ({len(text)} characters)"


def shorten_echoes(detail: str) -> str:
    """``detail`` with every quoted value (and any bare token) longer than :data:`MAX_ECHO` cut
    by :func:`echo`: however a message was written, an answer never repeats a long input."""

    def quoted(match: re.Match[str]) -> str:
        inner = match.group(2)
        return match.group(0) if len(inner) <= MAX_ECHO else echo(inner)

    detail = _QUOTED.sub(quoted, detail)
    return _BARE.sub(lambda m: m.group(0) if "..." in m.group(0) else echo(m.group(0)), detail)


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in WHERE:
        parts = parts[1:]
    return ".".join(parts) if parts else "the request body"


def _got(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f", got {'null' if value is None else str(value).lower()}"
    if isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = echo(value)
    elif isinstance(value, list):
        text = f"a list of {len(value)}"
    elif isinstance(value, dict):
        text = "an object"
    else:
        return ""
    return f", got {text}"


def _one(problem: dict[str, Any]) -> str:
    kind, ctx = problem.get("type", ""), problem.get("ctx") or {}
    field = _field(problem.get("loc", ()))
    if kind == "missing":
        return f"{field}: missing; add it to the request (see /docs)"
    if kind == "json_invalid":
        return "the request body is not valid JSON; send a JSON object (see /docs)"
    got = _got(problem.get("input"))
    if kind in EXPECTED:
        if field == "the request body":
            return f"the request body: expected {EXPECTED[kind]}{got}; see /docs for its fields"
        return f"{field}: expected {EXPECTED[kind]}{got}; send {field} as {EXPECTED[kind]}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{field}: expected {words} {ctx.get(key)}{got}; give a value in range"
    if kind == "literal_error":
        return f"{field}: expected {ctx.get('expected', 'one of the listed values')}{got}"
    message = str(problem.get("msg", "invalid value")).rstrip(".")
    return f"{field}: {message[0].lower() + message[1:] if message else 'invalid'}{got}"


def validation_sentence(problems: Sequence[dict[str, Any]]) -> str:
    """FastAPI's validation problems as one sentence (at most three, the first first)."""
    parts = [_one(problem) for problem in problems[:3]]
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return ("; ".join(parts) or "the request is not valid (see /docs)") + more


def body_error_sentence(content_type: str, why: str) -> str:
    """A body Starlette could not parse (``why``: its reason) as one sentence: what the
    endpoint expected, by the ``content_type`` the client declared."""
    if content_type.startswith("multipart/"):
        return (
            f"the request body is not a readable multipart/form-data upload ({why.rstrip('.')}); "
            'expected a form with the image file in the field "file"; send it as a browser form '
            "does (curl -F file=@photo.png)"
        )
    return (
        "the request body could not be read as JSON (it is not UTF-8 text); expected a JSON "
        "object in UTF-8; send the fields listed at /docs"
    )


def http_error_sentence(
    status: int, detail: Any, method: str, path: str, content_type: str = ""
) -> str:
    """A routing or body-parsing error as one sentence naming the method and path."""
    if status == 400 and any(part in str(detail) for part in PARSE_ERRORS):
        return body_error_sentence(content_type, str(detail))
    if status == 404 and detail == "Not Found":
        return (
            f"no endpoint at {method} {path}: a part of the address is missing or misspelled "
            "(e.g. /api/runs/NAME/sample/INDEX); the endpoints are listed at /docs"
        )
    if status == 405:
        return f"{method} is not allowed on {path}; see /docs for the method it takes"
    return str(detail)
