"""The tools prompt and reply schema of tierflow's own tool calling (embedded models, and the
Ollama-protocol test server that serves them): which tools exist, and the JSON a reply is
decoded under. The model answers ``{"name": <tool>, "arguments": {...}}``, its bare
arguments when one tool is forced, or the pseudo-tool `NO_TOOL` when it may call none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NO_TOOL", "tool_call_schema", "tools_prompt"]


# The pseudo-tool a model "calls" to answer in text when it may choose not to call a tool.
NO_TOOL = "no_tool"


def tool_call_schema(tools: Sequence[dict[str, Any]], forced: str | None, allow_none: bool) -> dict[str, Any]:
    """The JSON schema a tool-calling reply is decoded under (OpenAI-format `tools`).

    `forced` names the one tool to call: the reply is then its bare arguments object.
    Otherwise the reply is `{"name": ..., "arguments": {...}}` for one of the tools, or,
    when `allow_none`, for the pseudo-tool `NO_TOOL` whose `arguments.reply` is plain text.
    """
    chosen = [t for t in tools if forced is None or t["function"]["name"] == forced]
    if forced and not chosen:
        raise ValueError(f"tool_choice names '{forced}', which is not among the bound tools")
    if forced:
        return chosen[0]["function"].get("parameters") or {"type": "object", "properties": {}}
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": t["function"].get("parameters") or {"type": "object", "properties": {}},
            },
            "required": ["name", "arguments"],
        }
        for t in chosen
    ]
    if allow_none:
        options.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": NO_TOOL},
                    "arguments": {
                        "type": "object",
                        "properties": {"reply": {"type": "string"}},
                        "required": ["reply"],
                    },
                },
                "required": ["name", "arguments"],
            }
        )
    return {"anyOf": options}


# Longer enums are not spelled out in the tool prompt: the grammar enforces them, and a
# step with many labels lists its candidates in its own prompt (78 labels were ~800 tokens).
_MAX_ENUM_IN_PROMPT = 12


def _compact_enums(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_compact_enums(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _compact_enums(v) for k, v in schema.items()}
    if isinstance(out.get("enum"), list) and len(out["enum"]) > _MAX_ENUM_IN_PROMPT:
        out["enum"] = f"one of {len(out['enum'])} allowed values"
    return out


def _type_name(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        return _type_name(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs)
    if isinstance(schema.get("enum"), list):
        values = schema["enum"]
        if len(values) > _MAX_ENUM_IN_PROMPT:
            return f"one of {len(values)} allowed values"
        return "one of " + ", ".join(json.dumps(v) for v in values)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(dict.fromkeys(_type_name(s, defs) for s in schema[key]))
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_name(schema.get('items', {}), defs)}"
    if kind == "object" and schema.get("properties"):
        return "object " + json.dumps(_compact_enums(schema["properties"]))
    return str(kind or "any")


def _field_lines(parameters: Mapping[str, Any]) -> list[str]:
    """One line per argument: name, type, optional or not, description."""
    defs = parameters.get("$defs", {})
    required = set(parameters.get("required", []))
    lines = []
    for name, sub in (parameters.get("properties") or {}).items():
        optional = "" if name in required else ", optional"
        description = str(sub.get("description", "")).strip()
        lines.append(f"  - {name} ({_type_name(sub, defs)}{optional})" + (f": {description}" if description else ""))
    return lines


def tools_prompt(tools: Sequence[dict[str, Any]], forced: str | None, allow_none: bool) -> str:
    """The system text that tells the model which tools exist and the reply shape to use.

    Arguments are listed one per line (name, type, description) rather than as raw JSON
    Schema: shorter, and Qwen2.5-1.5B extracted the sample ticket's amount with it.
    """
    if forced:
        fn = next(t["function"] for t in tools if t["function"]["name"] == forced)
        what = str(fn.get("description", "")).strip()
        head = f"Answer with one JSON object ({what})" if what else "Answer with one JSON object"
        return "\n".join([f"{head} with these fields:", *_field_lines(fn.get("parameters") or {})])
    lines = ["You can call these tools. Answer with JSON only."]
    for t in tools:
        fn = t["function"]
        lines.append(f"- {fn['name']}: {fn.get('description', '').strip()}")
        lines.extend(_field_lines(fn.get("parameters") or {}))
    lines.append('Reply as {"name": <tool name>, "arguments": {...}}.')
    if allow_none:
        lines.append(f'If no tool fits, reply {{"name": "{NO_TOOL}", "arguments": {{"reply": <text>}}}}.')
    return "\n".join(lines)
