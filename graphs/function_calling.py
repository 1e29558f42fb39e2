"""function_calling: a request plus the caller's functions -> one verified call, or none.

    call (tool role: slm first) -> verify (schema; relevance, decline, numbers) -> responder

The functions come with the request (OpenAI tool format or bare {name, description,
parameters}), as in OpenAI's function calling: the graph picks the function and its
arguments and *returns* the verified call; the caller executes it. When no function fits,
the right answer is no call, and the step may decline. This is the tool caller the
order_agent's tool steps use, on tools it has never seen (the BFCL suites evaluate it).

Checks, cheapest first: the function is one of those declared and its arguments validate
against the declared JSON Schema (types, required, enums; a real validator). Then three
soft checks (heuristics: they escalate a doubtful answer, and the top tier's answer
stands with a warning): the chosen function is semantically close to the request
(offline wordllama embeddings); a decline is made only when no function is close; every
number in the arguments is written in the request (or is the parameter's default), which
catches a small model's invented values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tierflow.agents.fields import repeated_value
from tierflow.agents.spec import Check, StepInput
from tierflow.agents.workers import default_plan, tool_caller
from tierflow.graphs.builder import Workflow
from tierflow.tools.embeddings import similarities

__all__ = [
    "WORKFLOW",
    "graph",
    "build",
    "numbers_in_text",
    "ungrounded_numbers",
    "relevance",
    "SERVES_SIMILARITY",
    "DECLINE_SIMILARITY",
]

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
# A multiplier written right after the digits: "$1.2M", "5k", "50mH" (milli), "100µF" (micro).
_SUFFIX = re.compile(r"\s?(k|K|thousand|M|million|mn|B|bn|billion|trillion|m|µ|u|n|p)(?=[A-Za-z]?\b|[A-Za-z]{1,3}\b)")
_SCALE = {"k": 1e3, "K": 1e3, "thousand": 1e3, "M": 1e6, "million": 1e6, "mn": 1e6, "B": 1e9, "bn": 1e9,
          "billion": 1e9, "trillion": 1e12, "m": 1e-3, "µ": 1e-6, "u": 1e-6, "n": 1e-9, "p": 1e-12}
_WORDS = {
    w: float(i)
    for i, w in enumerate(
        [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
        ]
    )
}
_WORDS |= {"thirty": 30.0, "forty": 40.0, "fifty": 50.0, "hundred": 100.0, "thousand": 1000.0, "million": 1e6,
           "billion": 1e9, "dozen": 12.0, "half": 0.5, "quarter": 0.25, "twice": 2.0, "double": 2.0, "triple": 3.0,
           "rest": 0.0, "none": 0.0, "pair": 2.0, "couple": 2.0, "week": 7.0, "fortnight": 14.0, "decade": 10.0,
           "century": 100.0, "dice": 6.0, "die": 6.0}
# Values any request may imply without writing them: nothing/one, and well-known constants
# (g, c, G, mu0, epsilon0, Avogadro, e, 0 degC in K), which arguments often spell out.
_IMPLIED = {0.0, 1.0, 9.8, 9.81, -9.8, -9.81, 3e8, 299792458.0, 6.674e-11, 1.256e-6, 4e-7 * 3.141592653589793,
            8.854e-12, 6.022e23, 1.602e-19, 273.15}


def numbers_in_text(text: str) -> set[float]:
    """Every number a reader sees in `text`: digits (1,000 / 2.5 / 1e-3), with a multiplier
    written after them ($1.2M, 50mH), number words, and for "N%" also N/100 (an argument
    may take a rate as a fraction); plus the values in `_IMPLIED`."""
    found: set[float] = set(_IMPLIED)
    for match in _NUMBER.finditer(text):
        raw = match.group(0)
        token = raw.replace(",", "")
        if not any(ch.isdigit() for ch in token):
            continue
        if "," in raw:  # "1,000" is a thousand, "[200,300]" is a list: keep both readings
            found |= {float(part) for part in raw.lstrip("+-").split(",") if part}
        try:
            value = float(token)
        except ValueError:
            continue
        found |= {value, abs(value)}
        after = text[match.end() : match.end() + 12]
        if after.startswith("%") or after.lstrip().startswith("percent"):
            found.add(value / 100)
        suffix = _SUFFIX.match(after)
        if suffix:
            found.add(value * _SCALE[suffix.group(1)])
    lowered = text.casefold()
    for word, value in _WORDS.items():
        if re.search(rf"\b{word}s?\b", lowered):
            found.add(value)
    return found


def _numbers(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[tuple[str, float, Mapping[str, Any]]]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield path, float(value), schema
    elif isinstance(value, Mapping):
        props = schema.get("properties") or {}
        for key, item in value.items():
            yield from _numbers(item, props.get(key) or {}, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, schema.get("items") or {}, f"{path}[{index}]")


def ungrounded_numbers(args: Mapping[str, Any], parameters: Mapping[str, Any], request: str) -> list[str]:
    """Arguments whose number the request does not state (defaults and enum values excepted)."""
    stated = numbers_in_text(request)
    bad = []
    for path, number, schema in _numbers(args, parameters, ""):
        allowed = {schema.get("default"), *(schema.get("enum") or [])}
        if any(isinstance(a, (int, float)) and not isinstance(a, bool) and float(a) == number for a in allowed):
            continue
        if not any(abs(number - s) <= 1e-9 * max(1.0, abs(s)) for s in stated):
            bad.append(f"{path}={number:g}")
    return bad


# Cosine similarity (wordllama, offline) of the request with a function's name and
# description. Measured on the visible BFCL files (simple_python + multiple: 600 relevant
# cases; irrelevance: 240): 0.7% of gold functions score below SERVES_SIMILARITY, as do
# 41% of the functions offered in irrelevance cases; 77% of relevant cases (and 12.5% of
# irrelevance cases) offer a function scoring at least DECLINE_SIMILARITY.
SERVES_SIMILARITY = 0.15
DECLINE_SIMILARITY = 0.5


def _describe(function: Mapping[str, Any]) -> str:
    return f"{re.sub(r'[._]', ' ', str(function.get('name', '')))}. {function.get('description', '')}"


def relevance(request: str, functions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """How well each function's name and description match the request (cosine, -1..1)."""
    return dict(zip((f["name"] for f in functions), similarities(request, [_describe(f) for f in functions]), strict=True))


def _serves_the_request(value: Mapping[str, Any], inp: StepInput) -> str | None:
    if value.get("name") is None:
        return None
    score = relevance(inp.request, [f for f in inp.functions if f["name"] == value["name"]]).get(value["name"], 0.0)
    if score < SERVES_SIMILARITY:
        return f"'{value['name']}' does not look related to the request (similarity {score:.2f}); call a function that serves it, or none"
    return None


def _declines_only_when_nothing_fits(value: Mapping[str, Any], inp: StepInput) -> str | None:
    if value.get("name") is not None or not inp.functions:
        return None
    name, score = max(relevance(inp.request, inp.functions).items(), key=lambda kv: kv[1])
    if score >= DECLINE_SIMILARITY:
        return f"'{name}' looks like it serves the request (similarity {score:.2f}); call it, or say precisely why it cannot"
    return None


def _numbers_are_stated(value: Mapping[str, Any], inp: StepInput) -> str | None:
    if value.get("name") is None:
        return None
    functions = {f["name"]: f for f in inp.functions}
    parameters = (functions.get(value["name"]) or {}).get("parameters") or {}
    bad = ungrounded_numbers(value.get("args") or {}, parameters, inp.request)
    if bad:
        return f"{', '.join(bad)}: the request does not state these numbers; use only values it gives, or leave optional arguments out"
    return None


def _arguments_are_distinct(value: Mapping[str, Any], inp: StepInput) -> str | None:
    # SmolLM2 filled every string argument with one value from the request (from_currency =
    # to_currency = "250" for "250 EUR in USD"); two arguments with one text rarely both fit:
    # none of the 600 visible BFCL simple_python / multiple gold calls has two.
    del inp
    repeat = repeated_value(value.get("args") or {}) if value.get("name") is not None else None
    if repeat is None:
        return None
    name, earlier, text = repeat
    return f"'{name}' and '{earlier}' have the same value {text!r}; give each argument its own value from the request"


def _finalize(state: Mapping[str, Any], resources: Mapping[str, Any]) -> dict[str, Any]:
    del resources
    result = next(iter((state.get("results") or {}).values()), None)
    if not isinstance(result, Mapping):
        return {"calls": [], "reply": None, "decided_by": state.get("decided_by", {}), "failure": state.get("failure")}
    calls = [] if result.get("tool") is None else [{"name": result["tool"], "arguments": result.get("args") or {}}]
    return {"calls": calls, "reply": result.get("reply"), "decided_by": state.get("decided_by", {}), "failure": state.get("failure")}


WORKFLOW = Workflow(
    name="function_calling",
    description=__doc__ or "",
    steps=(
        tool_caller(
            "call",
            instructions=(
                "You turn the user's request into a call of one of the given functions. Fill each argument with a "
                "value the request states or that follows directly from it; leave optional arguments out unless the "
                "request sets them. If no function fits the request, call none and say in one sentence why."
            ),
            # Heuristics, so soft: they send a doubtful answer up the ladder, and the top
            # tier's answer stands (with a warning) instead of going to a human.
            checks=(
                Check("the function serves the request", _serves_the_request, soft=True),
                Check("no call only when no function fits", _declines_only_when_nothing_fits, soft=True),
                Check("numbers in the arguments are stated in the request", _numbers_are_stated, soft=True),
                Check("string arguments are distinct", _arguments_are_distinct, soft=True),
            ),
            client_tools=True,
            may_decline=True,
        ),
    ),
    default_plan=default_plan("call"),
    finalize=_finalize,
)


# `build(checkpointer=..., registry=..., resources=...)` compiles it (the CLI, tests); `graph`
# is for langgraph.json: no checkpointer here, the LangGraph server brings its own.
build = WORKFLOW.compile
graph = build()
