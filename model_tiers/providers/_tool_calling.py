"""Shared base for tierflow's own chat models (embedded and scripted).

LangChain's fake chat models raise NotImplementedError on `bind_tools` and
`with_structured_output`; ours implement both the LangChain way: `bind_tools` binds
OpenAI-format tool dicts plus a `tool_choice`, and `with_structured_output` is LangChain's
default (a forced call of one tool named after the schema, parsed back into it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = ["ToolCallingChatModel", "forced_tool_name", "messages_as_text"]


def forced_tool_name(tools: Sequence[dict[str, Any]], tool_choice: Any) -> str | None:
    """The one tool the caller requires, or None when the model may choose (or not call)."""
    if isinstance(tool_choice, dict):
        return tool_choice.get("function", {}).get("name") or tool_choice.get("name")
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "any", "required"):
        return tool_choice
    if tool_choice in ("any", "required", True) and len(tools) == 1:
        return str(tools[0]["function"]["name"])
    return None


def messages_as_text(messages: Sequence[BaseMessage]) -> str:
    parts = []
    for m in messages:
        content = m.content if isinstance(m.content, str) else json.dumps(m.content)
        parts.append(content)
        for call in getattr(m, "tool_calls", None) or []:
            parts.append(json.dumps({"name": call["name"], "args": call["args"]}))
    return "\n".join(parts)


class ToolCallingChatModel(BaseChatModel):
    """A chat model whose `_generate` understands `tools` / `tool_choice` kwargs.

    Subclasses implement `_answer`, which sees the tools as a list (empty when none are
    bound) and the caller's `tool_choice`; LangChain's callback plumbing stays here.
    """

    def _answer(
        self, messages: list[BaseMessage], tools: list[dict[str, Any]], tool_choice: Any, stop: list[str] | None
    ) -> ChatResult:
        raise NotImplementedError(f"{type(self).__name__} must implement _answer")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._answer(messages, list(tools or []), tool_choice, stop)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice or "auto", **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        # Both our models decode structured output as a forced tool call (a JSON-schema
        # grammar for the embedded engine), so every `method` maps to the same path.
        del method
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)
