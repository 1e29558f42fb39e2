"""The Ollama-protocol test server's request handling that needs no model: how turns reach
the engine, and how the model's tool decision goes back (tests/servers/ollama_protocol.py).
The server itself runs against SmolLM2 in tests/integration/test_ollama_provider.py."""

from __future__ import annotations

import json

from langchain_core.utils.function_calling import convert_to_openai_tool

from tests.servers.ollama_protocol import ChatMessage, ChatRequest, _reply_message, engine_messages, plan_decode
from tierflow.model_tiers.conformance import lookup_order

CONVERSATION = [
    ChatMessage(role="user", content="Where is order A-1234?"),
    ChatMessage(role="assistant", content="", tool_calls=[{"function": {"name": "lookup_order", "arguments": {"order_id": "A-1234"}}}]),
    ChatMessage(role="tool", content="in transit", tool_name="lookup_order"),
]


def test_a_tool_result_stays_a_tool_turn_for_the_models_own_template() -> None:
    turns = engine_messages(CONVERSATION, chat_format=None)
    assert turns[1] == {"role": "assistant", "content": json.dumps({"name": "lookup_order", "arguments": {"order_id": "A-1234"}})}
    assert turns[2] == {"role": "tool", "content": "in transit", "tool_name": "lookup_order"}


def test_a_named_llama_cpp_format_gets_the_result_as_a_user_turn_naming_the_tool() -> None:
    # llama.cpp's named formats (gemma...) drop any turn that is not system, user or assistant.
    turns = engine_messages(CONVERSATION, chat_format="gemma")
    assert turns[2] == {"role": "user", "content": "Result of lookup_order: in transit"}


def _tools_request(**fields: object) -> ChatRequest:
    tools = [convert_to_openai_tool(lookup_order)]
    return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": tools, **fields})


def test_the_models_choice_goes_back_as_a_call_or_as_text() -> None:
    plan = plan_decode(_tools_request(), None, 64)
    called = _reply_message(plan, json.dumps({"name": "lookup_order", "arguments": {"order_id": "A-1"}}))
    assert called["tool_calls"] == [{"function": {"name": "lookup_order", "arguments": {"order_id": "A-1"}}}]
    declined = _reply_message(plan, json.dumps({"name": "no_tool", "arguments": {"reply": "Bonjour"}}))
    assert declined == {"role": "assistant", "content": "Bonjour"}
    cut_off = _reply_message(plan, '{"name": "lookup_order", "argu')
    assert cut_off == {"role": "assistant", "content": '{"name": "lookup_order", "argu'}


def test_tools_leave_the_choice_to_the_model() -> None:
    plan = plan_decode(_tools_request(), None, 64)
    assert plan.json_schema is not None
    options = [o["properties"]["name"]["const"] for o in plan.json_schema["anyOf"]]
    assert options == ["lookup_order", "no_tool"]  # a call, or text: never a forced call
    assert plan.messages[0]["role"] == "system" and "If no tool fits" in plan.messages[0]["content"]


def test_top_logprobs_alone_asks_for_logprobs_as_ollama_does() -> None:
    plan = plan_decode(_tools_request(top_logprobs=3), None, 64)
    assert plan.logprobs and plan.top_logprobs == 3
    assert not plan_decode(_tools_request(), None, 64).logprobs
