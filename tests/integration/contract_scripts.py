"""Scripted replies for the provider contract (tests/integration/test_provider_contract.py).

A scripted tier names one of these in ``options.function``. `reply` answers the contract's
probes as a well-behaved model would; each `fault_*` raises what an HTTP client raises
for that fault (httpx's own exceptions, as a provider built on httpx would let through),
so the scripted provider is held to the same meanings as a served one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from tierflow.model_tiers.conformance import ContractPrompts
from tierflow.model_tiers.testing import tool_call

_PROMPTS = ContractPrompts()
_URL = "http://scripted.invalid/v1/chat/completions"


def _last_human(messages: Sequence[BaseMessage]) -> str:
    return next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")


def _text_of(probe: Sequence[BaseMessage]) -> str:
    return _last_human(probe)


def reply(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> str | dict[str, Any] | AIMessage:
    asked = _last_human(messages)
    if asked == _text_of(_PROMPTS.structured):
        return {"label": "shipping", "urgent": True}  # the arguments of the forced schema call
    if asked == _text_of(_PROMPTS.tool_call):
        return tool_call("lookup_order", {"order_id": "A-1234"})
    if asked == _text_of(_PROMPTS.decline):
        return "Bonjour."
    return "Hello! How can I help you today?"


def _status_error(status: int, message: str) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", _URL)
    return httpx.HTTPStatusError(message, request=request, response=httpx.Response(status, request=request))


def fault_404(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> BaseException:
    return _status_error(404, "model 'scripted-missing' not found")


def fault_401(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> BaseException:
    return _status_error(401, "invalid API key")


def fault_429(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> BaseException:
    return _status_error(429, "rate limit reached")


def fault_500(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> BaseException:
    return _status_error(500, "internal server error")


def fault_timeout(messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> BaseException:
    return httpx.ReadTimeout("timed out", request=httpx.Request("POST", _URL))
