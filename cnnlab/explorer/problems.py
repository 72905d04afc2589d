"""Error answers as one readable sentence: FastAPI's list of validation problems, and its
bare "Not Found" / "Method Not Allowed", turned into what was wrong, what was expected and
what to do (the page shows ``detail`` as it is)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
        text = repr(value) if len(value) <= MAX_ECHO else f"text of {len(value)} characters"
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


def http_error_sentence(status: int, detail: Any, method: str, path: str) -> str:
    """A routing error as one sentence naming the method and path."""
    if status == 404 and detail == "Not Found":
        return (
            f"no endpoint at {method} {path}: a part of the address is missing or misspelled "
            "(e.g. /api/runs/NAME/sample/INDEX); the endpoints are listed at /docs"
        )
    if status == 405:
        return f"{method} is not allowed on {path}; see /docs for the method it takes"
    return str(detail)
