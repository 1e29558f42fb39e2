"""Scripted tier replies for graphs run out of process (LangGraph server, kill-and-resume).

A server process cannot receive Python objects from a test, so its tiers are `scripted`
tiers in a tiers file whose `options.function` names a function here
(`tests.integration.studio_scripts:slm`, `...:frontier`). `write_tiers_file` writes that
file; the process finds it through `TIERFLOW_TIERS`.

The replies depend on the customer's message (fenced between <<< and >>> in every prompt)
and on the schema asked for (the forced tool's name), never on the order of calls, so one
server answers concurrent runs of any case:

* `DECLINED` (ticket_triage): every step passes on its first tier.
* `INVENTS_AMOUNT` (ticket_triage): both tiers extract an amount the message does not
  contain, so the verifier climbs the whole ladder and the run pauses for a human.
* any other message or schema (the other graphs in the catalog): a schema-valid value
  built from the tool's JSON schema. It may fail a graph's domain checks; a run with
  `on_top_failure="fail"` then still ends, with a typed failure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from tierflow.model_tiers.testing import scripted_ladder_toml, tool_call

__all__ = [
    "DECLINED",
    "DECLINED_LABEL",
    "DECLINED_ENTITIES",
    "INVENTS_AMOUNT",
    "INVENTED_AMOUNT",
    "TRUE_ENTITIES",
    "SCRIPTED_GRAPHS",
    "TIERS",
    "slm",
    "frontier",
    "schema_example",
    "write_tiers_file",
]

DECLINED = "My card payment of 42.50 EUR at Cafe Lumen was declined yesterday. Why?"
DECLINED_LABEL = "declined_card_payment"
DECLINED_ENTITIES = {"amount": "42.50", "currency": "EUR", "merchant": "Cafe Lumen", "date": "yesterday"}

INVENTS_AMOUNT = "Streamly charged me 19.99 GBP twice this month."
INVENTED_AMOUNT = "199.90"
TRUE_ENTITIES = {"amount": "19.99", "currency": "GBP", "merchant": "Streamly"}

# Graphs whose every model step has a scripted right answer for `DECLINED` (their runs
# must end "done"); other graphs get schema-valid filler and must merely end.
SCRIPTED_GRAPHS = frozenset({"ticket_triage"})

TIERS = ("slm", "frontier")

_FENCED = re.compile(r"<<<\n?(.*?)\n?>>>", re.DOTALL)

_LABELS = {DECLINED: DECLINED_LABEL, INVENTS_AMOUNT: "transaction_charged_twice"}


def _customer_message(messages: Sequence[BaseMessage]) -> str:
    for message in messages:
        if isinstance(message, HumanMessage) and isinstance(message.content, str):
            found = _FENCED.search(message.content)
            if found:
                return found.group(1).strip()
    return ""


def _ticket_reply(schema: str, message: str) -> dict[str, Any] | None:
    """The ticket_triage answers for the two scripted messages (None: not scripted)."""
    if message not in _LABELS:
        return None
    if schema == "ClassifyLabel":
        return {"label": _LABELS[message], "confidence": 0.93}
    if schema == "TicketEntities":
        if message == INVENTS_AMOUNT:
            return {**TRUE_ENTITIES, "amount": INVENTED_AMOUNT}
        return dict(DECLINED_ENTITIES)
    if schema == "DraftReply":
        return {
            "reply": "Sorry about that. Payments are declined when a limit or a security check applies; "
            "please check the app and try again.",
            "cited": ["S1"],
        }
    return None


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        return _resolve(node, root)
    return schema


def schema_example(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> Any:
    """A small value valid against a JSON schema (what a model constrained by it could say)."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [s for s in schema[key] if _resolve(s, root).get("type") != "null"] or schema[key]
            return schema_example(options[0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {name: schema_example(props[name], root) for name in required if name in props}
    if kind == "array":
        count = int(schema.get("minItems", 1))
        return [schema_example(schema.get("items", {}), root) for _ in range(count)]
    if kind == "string":
        return "x" * max(int(schema.get("minLength", 1)), 1)
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        low = schema.get("minimum", 0.0)
        high = schema.get("maximum", low + 1.0)
        return (float(low) + float(high)) / 2
    if kind == "boolean":
        return False
    return None


def _reply(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> AIMessage | str:
    # Both tiers answer alike: whether a step escalates depends on the message, not the tier.
    if not tools:
        return "ok"
    function = tools[0]["function"]
    scripted = _ticket_reply(function["name"], _customer_message(messages))
    args = scripted if scripted is not None else schema_example(function.get("parameters", {}))
    # A tool call works for both structured output (a forced call) and tool steps.
    return tool_call(function["name"], args)


def slm(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> AIMessage | str:
    """Replies of the scripted `slm` tier."""
    return _reply(messages, tools)


def frontier(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> AIMessage | str:
    """Replies of the scripted `frontier` tier."""
    return _reply(messages, tools)


def write_tiers_file(path: Path) -> Path:
    """A tiers TOML whose two tiers are the scripted `slm` and `frontier` above (both local;
    role map, policy and escalation as the defaults)."""
    path.write_text(scripted_ladder_toml(f"{__name__}:slm", f"{__name__}:frontier", frontier_local=True), encoding="utf-8")
    return path
