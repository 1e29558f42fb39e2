"""Function calling graded as BFCL's AST checker does, against ``possible_answer`` lists.

A call matches an expected call when the function name is right, every required argument
is present (required by the function doc, or by the answer: a parameter whose accepted
list lacks ``""``), no argument is unexpected, and every value is one of the accepted
values. Value comparison follows BFCL: strings compare case-insensitively ignoring spaces
and ``,./-_*^`` (so "April 1, 2024" == "april 1 2024"), lists element by element, dicts
key by key through their own accepted lists. Deliberate differences: numbers compare by
value in both directions (BFCL accepts an int for a float parameter but rejects 5.0 for
an integer; JSON tool-call decoders produce either), while booleans never equal numbers;
and a name with dots (or any other character a tool name cannot hold) replaced by
underscores is accepted, since OpenAI-style tool names cannot contain them (BFCL does the
same per model).

Several calls (parallel) match as a multiset: any order, each expected call matched by a
different actual call (a real bipartite matching, where BFCL matches greedily). An
expected list that is empty (irrelevance) passes only when no call is made; a relevance
case (``expected.any_call``) passes with any call.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tierflow.evals.datasets.bfcl import ExpectedCall, FunctionCallCase, FunctionDoc, tool_safe_name

from .base import EvaluationError, EvaluationResult, verdict

__all__ = [
    "FunctionCall",
    "parse_function_calls",
    "standardise_string",
    "match_call",
    "match_function_calls",
    "FunctionCallMatch",
]

_IGNORED_IN_STRINGS = re.compile(r"[ ,./\-_*^]")


class FunctionCall(BaseModel):
    """A call the model made."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


def _one_call(raw: Any) -> FunctionCall:
    if isinstance(raw, FunctionCall):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    if not isinstance(raw, Mapping):
        raise EvaluationError(f"a function call must be a mapping, got {type(raw).__name__}")
    if "function" in raw and isinstance(raw["function"], Mapping):  # OpenAI wire format
        raw = raw["function"]
    if "name" in raw and isinstance(raw["name"], str):
        arguments = raw.get("arguments", raw.get("args", {}))
        if isinstance(arguments, str):  # OpenAI sends arguments as a JSON string
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as err:
                raise EvaluationError(f"arguments of {raw['name']!r} are not valid JSON: {err}") from err
        if not isinstance(arguments, Mapping):
            raise EvaluationError(f"arguments of {raw['name']!r} must be an object, got {type(arguments).__name__}")
        return FunctionCall(name=raw["name"], arguments=dict(arguments))
    if len(raw) == 1:  # BFCL style {func_name: {arg: value}}
        ((name, arguments),) = raw.items()
        if isinstance(name, str) and isinstance(arguments, Mapping):
            return FunctionCall(name=name, arguments=dict(arguments))
    raise EvaluationError(f"cannot read a function call from {raw!r}; expected {{name, arguments}} or {{name: {{...}}}}")


def parse_function_calls(output: Any) -> list[FunctionCall]:
    """The calls in a model output: None (no call), a message with ``tool_calls``
    (LangChain ``AIMessage``), one call, or a list of calls, each as ``FunctionCall``,
    ``{"name", "arguments"|"args"}`` (arguments may be a JSON string), OpenAI's
    ``{"function": {...}}`` or BFCL's ``{name: {args}}``."""
    if output is None:
        return []
    tool_calls = getattr(output, "tool_calls", None)
    if tool_calls is not None and not isinstance(output, Mapping):
        output = tool_calls
    if isinstance(output, (str, bytes)):
        raise EvaluationError("output is text, not function calls")
    if isinstance(output, (Mapping, FunctionCall, BaseModel)):
        return [_one_call(output)]
    if isinstance(output, Sequence):
        return [_one_call(item) for item in output]
    raise EvaluationError(f"cannot read function calls from {type(output).__name__}")


def standardise_string(text: str) -> str:
    """BFCL's string normal form: lower case, no spaces or ``,./-_*^``, ' as "."""
    return _IGNORED_IN_STRINGS.sub("", text).lower().replace("'", '"')


def _is_accepted_map(candidate: Mapping[str, Any]) -> bool:
    """BFCL writes accepted dict values as {key: [accepted values]}."""
    return all(isinstance(value, list) for value in candidate.values())


def _dict_problem(value: Mapping[str, Any], accepted: Mapping[str, list[Any]], schema: Mapping[str, Any] | None) -> str | None:
    properties = (schema or {}).get("properties") or {}
    for key, item in value.items():
        if key not in accepted:
            return f"unexpected key {key!r}"
        if not any(_same(item, option, properties.get(key)) for option in accepted[key]):
            return f"key {key!r} has {item!r}, expected one of {accepted[key]!r}"
    for key, options in accepted.items():
        if key not in value and "" not in options:
            return f"missing key {key!r}"
    return None


def _same(value: Any, candidate: Any, schema: Mapping[str, Any] | None = None) -> bool:
    """Whether ``value`` equals one accepted ``candidate`` under BFCL's comparison rules."""
    if isinstance(candidate, Mapping):
        if not isinstance(value, Mapping):
            return False
        if _is_accepted_map(candidate):
            return _dict_problem(value, candidate, schema) is None
        return set(value) == set(candidate) and all(_same(value[key], candidate[key]) for key in candidate)
    if isinstance(candidate, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(candidate):
            return False
        item_schema = (schema or {}).get("items")
        return all(_same(item, option, item_schema) for item, option in zip(value, candidate, strict=True))
    if isinstance(candidate, bool) or isinstance(value, bool):
        return isinstance(candidate, bool) and isinstance(value, bool) and candidate == value
    if isinstance(candidate, (int, float)):
        return isinstance(value, (int, float)) and math.isclose(value, candidate, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(candidate, str):
        return isinstance(value, str) and standardise_string(value) == standardise_string(candidate)
    return bool(value == candidate)


def _name_matches(actual: str, expected: str) -> bool:
    return actual == expected or actual == tool_safe_name(expected)


def match_call(call: FunctionCall, expected: ExpectedCall, doc: FunctionDoc | None = None) -> str | None:
    """None when ``call`` satisfies ``expected``; otherwise why not."""
    if not _name_matches(call.name, expected.name):
        return f"called {call.name!r}, expected {expected.name!r}"
    accepted = expected.accepted_arguments
    properties = doc.properties if doc is not None else {}
    required = set(doc.required if doc is not None else ()) | {
        param for param, options in accepted.items() if "" not in options
    }
    missing = sorted(param for param in required if param not in call.arguments)
    if missing:
        return f"{expected.name}: missing required argument(s) {missing}"
    for param, value in call.arguments.items():
        if param not in accepted or (doc is not None and param not in properties):
            return f"{expected.name}: unexpected argument {param!r}"
        if not any(_same(value, option, properties.get(param)) for option in accepted[param]):
            options = [option for option in accepted[param] if option != ""]
            return f"{expected.name}: argument {param!r} is {value!r}, expected one of {options!r}"
    return None


def _perfect_matching(compatible: list[list[bool]]) -> list[int] | None:
    """For each expected call (row) the index of a distinct actual call, or None."""
    owner: dict[int, int] = {}  # actual index -> expected index

    def place(row: int, visited: set[int]) -> bool:
        for column, ok in enumerate(compatible[row]):
            if ok and column not in visited:
                visited.add(column)
                if column not in owner or place(owner[column], visited):
                    owner[column] = row
                    return True
        return False

    for row in range(len(compatible)):
        if not place(row, set()):
            return None
    assignment = [0] * len(compatible)
    for column, row in owner.items():
        assignment[row] = column
    return assignment


def match_function_calls(
    calls: Sequence[FunctionCall], expected: Sequence[ExpectedCall], functions: Sequence[FunctionDoc] = ()
) -> EvaluationResult:
    """Pass when the calls match the expected calls one to one, in any order; with no
    expected calls, pass only when there are no calls."""
    name = "function_call_match"
    if not expected:
        return verdict(
            name,
            not calls,
            f"made {len(calls)} call(s) ({', '.join(call.name for call in calls)}) where no function fits the request",
            calls=len(calls),
        )
    if len(calls) != len(expected):
        return verdict(name, False, f"made {len(calls)} call(s), expected {len(expected)}", calls=len(calls))
    docs = {doc.name: doc for doc in functions}
    problems = [[match_call(call, want, docs.get(want.name)) for call in calls] for want in expected]
    assignment = _perfect_matching([[problem is None for problem in row] for row in problems])
    if assignment is not None:
        return verdict(name, True, calls=len(calls), assignment=assignment)
    unmatched = {
        f"expected[{index}] {want.name}": [problem for problem in problems[index] if problem]
        for index, want in enumerate(expected)
        if all(problem is not None for problem in problems[index])
    }
    first = next(iter(unmatched.values()), ["no one-to-one assignment of calls to expected calls"])
    return verdict(name, False, first[0] if first else "no match", calls=len(calls), unmatched=unmatched)


@dataclass(frozen=True)
class FunctionCallMatch:
    """Grades a tool caller's output (see ``parse_function_calls``) for a BFCL case."""

    name: str = "function_call_match"

    def evaluate(self, output: Any, case: FunctionCallCase) -> EvaluationResult:
        try:
            calls = parse_function_calls(output)
        except EvaluationError as err:
            return verdict(self.name, False, f"output is not readable as function calls: {err}")
        if case.expected.any_call:  # relevance: any call is right
            return verdict(self.name, bool(calls), "made no call where a function fits the request", calls=len(calls))
        result = match_function_calls(calls, case.expected.calls, case.inputs.functions)
        return result.model_copy(update={"name": self.name})
