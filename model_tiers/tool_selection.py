"""Tool calls on servers that only honour a *named* tool choice.

llama.cpp's OpenAI-compatible server answers `tool_choice` "auto" / "required" in plain
text, and vLLM without `--enable-auto-tool-choice` refuses them; both produce a call when
the request names the one tool to call (grammar / guided decoding). A tier that declares
`capabilities.tool_choice = "named"` gets each free choice among several tools in two
calls instead: first the function's name (structured output over an enum of the names,
plus "none" when the caller allows no call), then the named call. Both calls count in
the one reply's usage, so the ledger still has one record per attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall
from langchain_core.messages.ai import add_usage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, create_model

from tierflow.model_tiers.providers._tool_calling import forced_tool_name

__all__ = ["NO_FUNCTION", "needs_selection", "select_then_call"]

NO_FUNCTION = "none"


def _names(tools: Sequence[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def needs_selection(tools: Sequence[Any], tool_choice: str | None) -> bool:
    """Whether this request leaves the choice of tool to the model (so a named-only tier
    must be asked in two steps)."""
    if tool_choice == "none":
        return False
    return forced_tool_name([convert_to_openai_tool(t) for t in tools], tool_choice) is None


def _selection_model(names: Sequence[str], allow_none: bool) -> type[BaseModel]:
    options = (*names, NO_FUNCTION) if allow_none else tuple(names)
    # A Literal built at run time: a type to pydantic, a value to the type checker.
    choice_type: Any = Literal[options]
    return create_model(
        "FunctionChoice",
        function=(choice_type, Field(description="the name of the function to call" + (", or 'none'" if allow_none else ""))),
        reason=(str, Field(default="", description="one short sentence")),
    )


def _selection_prompt(tools: Sequence[dict[str, Any]], allow_none: bool) -> str:
    lines = ["Choose the one function that serves the request above:"]
    lines += [f"- {t['function']['name']}: {t['function'].get('description', '').strip()}" for t in tools]
    if allow_none:
        lines.append(f"Answer '{NO_FUNCTION}' if no function fits the request, and say why in `reason`.")
    return "\n".join(lines)


def _add_usage(first: AIMessage, second: AIMessage) -> AIMessage:
    a, b = first.usage_metadata, second.usage_metadata
    if not (a or b):
        return second
    return second.model_copy(update={"usage_metadata": add_usage(a, b)})


def select_then_call(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    tools: Sequence[Any],
    tool_choice: str | None,
    structured: Callable[[BaseChatModel, type[BaseModel], list[BaseMessage]], tuple[BaseModel, AIMessage]],
) -> tuple[list[ToolCall], AIMessage]:
    """(tool calls, reply message) for a free tool choice on a named-only tier.

    `structured(model, schema, messages)` is the registry's structured-output call (it
    raises `InvalidModelOutput` with the usage when the reply does not parse)."""
    formatted = [convert_to_openai_tool(t) for t in tools]
    allow_none = tool_choice in (None, "auto")
    schema = _selection_model(_names(formatted), allow_none)
    ask = [*messages, HumanMessage(_selection_prompt(formatted, allow_none))]
    choice, selection_message = structured(model, schema, ask)
    name = str(choice.model_dump()["function"])
    if name == NO_FUNCTION:
        reason = str(getattr(choice, "reason", "") or "no function fits the request")
        return [], selection_message.model_copy(update={"content": reason, "tool_calls": []})
    message = model.bind_tools(list(tools), tool_choice=name).invoke(list(messages))
    return list(message.tool_calls), _add_usage(selection_message, message)
