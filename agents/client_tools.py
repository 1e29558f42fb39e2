"""Client-declared functions: tools that arrive with the request instead of from a toolbox.

As with OpenAI's function calling, the caller sends the functions (name, description,
JSON-Schema parameters) with its request; a tool step on such a graph picks a call (or,
when the step may decline, no call at all) and the verified call is *returned*, not
executed: the caller owns the implementation. The verifier checks the call against the
declared schema with a real JSON-Schema validator.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ClientFunction",
    "MAX_FUNCTIONS",
    "MAX_FUNCTIONS_CHARS",
    "parse_functions",
    "openai_tools",
    "call_problem",
]

MAX_FUNCTIONS = 128  # OpenAI's limit on tools per request
MAX_FUNCTIONS_CHARS = 200_000
# OpenAI's rule for tool names; dots are not allowed, so callers map them (BFCL does).
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ClientFunction(BaseModel):
    """One function the caller offers: its parameters are a JSON Schema for an object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"function name {name!r} must be 1-64 letters, digits, '_' or '-' (no dots or spaces)")
        return name

    @field_validator("parameters")
    @classmethod
    def _valid_schema(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        if parameters.get("type", "object") != "object":
            raise ValueError(f"parameters must be a JSON Schema of type 'object', got type {parameters.get('type')!r}")
        try:
            Draft202012Validator.check_schema(parameters)
        except SchemaError as err:
            where = "/".join(str(p) for p in err.path) or "(root)"
            raise ValueError(f"parameters are not a valid JSON Schema at {where}: {err.message}") from None
        return parameters


def _unwrap(entry: Any) -> Any:
    """Accept OpenAI's `{"type": "function", "function": {...}}` as well as the bare object."""
    if isinstance(entry, Mapping) and entry.get("type") == "function" and isinstance(entry.get("function"), Mapping):
        return entry["function"]
    return entry


def parse_functions(raw: Any) -> list[ClientFunction]:
    """The request's functions, validated; raises ValueError saying which one is wrong and why."""
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise ValueError(f"'functions' must be a list of function definitions, got {type(raw).__name__}")
    if not raw:
        raise ValueError("'functions' is empty: this graph needs at least one function to choose from")
    if len(raw) > MAX_FUNCTIONS:
        raise ValueError(f"'functions' has {len(raw)} entries; the limit is {MAX_FUNCTIONS}")
    size = len(json.dumps(raw, default=str))
    if size > MAX_FUNCTIONS_CHARS:
        raise ValueError(f"'functions' is {size:,} characters of JSON; the limit is {MAX_FUNCTIONS_CHARS:,}")
    functions: list[ClientFunction] = []
    for index, entry in enumerate(raw):
        try:
            functions.append(ClientFunction.model_validate(_unwrap(entry)))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(entry)"
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"functions[{index}] is invalid: {where}: {message}") from None
    names = [f.name for f in functions]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"function names must be unique; declared more than once: {', '.join(twice)}")
    return functions


def openai_tools(functions: Sequence[Mapping[str, Any] | ClientFunction]) -> list[dict[str, Any]]:
    """The functions in the OpenAI tool format every provider binds. Mappings are taken as
    already validated (the router stores `parse_functions`' output in state), so a step
    attempt does not re-check every schema."""
    return [
        {"type": "function", "function": f.model_dump() if isinstance(f, ClientFunction) else dict(f)}
        for f in functions
    ]


def call_problem(functions: Sequence[Mapping[str, Any]], name: Any, args: Any) -> str | None:
    """Why a call does not fit the declared functions (None when it does)."""
    declared = {f["name"]: f for f in functions}
    if name not in declared:
        return f"unknown function '{name}'; declared functions: {', '.join(declared) or 'none'}"
    if not isinstance(args, Mapping):
        return f"arguments of '{name}' must be a JSON object, got {type(args).__name__}"
    parameters = declared[name].get("parameters") or {}
    props = parameters.get("properties")
    if isinstance(props, Mapping) and parameters.get("additionalProperties") is not True:
        unknown = sorted(str(k) for k in args if k not in props)
        if unknown:
            return f"{unknown} are not parameters of '{name}'; it takes: {', '.join(props) or 'none'}"
    validator = Draft202012Validator(parameters)
    errors = sorted(validator.iter_errors(dict(args)), key=lambda e: (len(e.path), list(map(str, e.path))))
    if not errors:
        return None
    first = errors[0]
    where = "/".join(str(p) for p in first.path) or "(arguments)"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"arguments of '{name}' are invalid at {where}: {first.message}{more}"
