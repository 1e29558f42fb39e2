"""Tiers that only honour a named tool choice: a free choice becomes select-then-call, with
both calls in the one reply's usage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

from tierflow.model_tiers import ROLES, InvalidModelOutput, TierRegistry, config_from_mapping, estimate_tokens
from tierflow.model_tiers.providers._tool_calling import messages_as_text
from tierflow.model_tiers.testing import ScriptedChatModel

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Time in a city.",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
]
ASK = [HumanMessage("What time is it in Oslo?")]


def tier(choice: str, replies: Any) -> tuple[TierRegistry, ScriptedChatModel]:
    config = config_from_mapping({
        "tiers": [{"name": "slm", "provider": "scripted", "model": "s", "options": {"replies": ["unused"]},
                   "capabilities": {"tool_choice": choice}, "price_input_per_mtok": 1.0, "price_output_per_mtok": 1.0}],
        "roles": dict.fromkeys(ROLES, "slm"),
    })
    registry = TierRegistry(config, env={})
    model = ScriptedChatModel(replies=replies)
    registry.set_model("slm", model)
    return registry, model


def selector(pick: str, reason: str = ""):
    def reply(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
        if tools[0]["function"]["name"] == "FunctionChoice":
            return {"function": pick, "reason": reason}
        return {"city": "Oslo"}

    return reply


def test_a_free_choice_on_a_named_only_tier_takes_two_calls_counted_as_one_reply():
    registry, model = tier("named", selector("get_time"))
    reply = registry.call("slm", ASK, tools=TOOLS, tool_choice="auto")
    assert [(c["name"], c["args"]) for c in reply.value] == [("get_time", {"city": "Oslo"})]
    first, second = model.calls
    enum = first["tools"][0]["function"]["parameters"]["properties"]["function"]["enum"]
    assert enum == ["get_weather", "get_time", "none"]
    assert "Choose the one function" in first["messages"][-1].content
    assert second["tool_choice"] == "get_time" and second["messages"] == ASK
    # The usage is the sum of both calls (a scripted tier estimates its input tokens from the prompt).
    assert reply.usage.input_tokens == sum(estimate_tokens(messages_as_text(c["messages"])) for c in model.calls)
    assert reply.usage.cost_usd == pytest.approx((reply.usage.input_tokens + reply.usage.output_tokens) / 1e6)


def test_none_is_offered_only_when_the_caller_allows_no_call():
    registry, model = tier("named", selector("none", "no weather or time question"))
    reply = registry.call("slm", [HumanMessage("Book a flight")], tools=TOOLS, tool_choice="auto")
    assert reply.value == [] and reply.message.content == "no weather or time question"
    assert len(model.calls) == 1

    registry, model = tier("named", selector("get_weather"))
    registry.call("slm", ASK, tools=TOOLS, tool_choice="any")
    assert model.calls[0]["tools"][0]["function"]["parameters"]["properties"]["function"]["enum"] == ["get_weather", "get_time"]


def test_a_named_choice_or_an_auto_tier_takes_one_call():
    registry, model = tier("named", selector("unused"))
    reply = registry.call("slm", ASK, tools=TOOLS, tool_choice="get_weather")
    assert reply.value[0]["name"] == "get_weather" and len(model.calls) == 1
    registry, model = tier("named", selector("unused"))
    registry.call("slm", ASK, tools=TOOLS[:1], tool_choice="any")  # one tool, required: named
    assert len(model.calls) == 1 and model.calls[0]["tool_choice"] == "any"
    registry, model = tier("auto", selector("unused"))
    registry.call("slm", ASK, tools=TOOLS, tool_choice="auto")
    assert len(model.calls) == 1 and model.calls[0]["tool_choice"] == "auto"


def test_an_unreadable_selection_is_invalid_output_with_its_usage():
    registry, _ = tier("named", lambda messages, tools: "I think the time one")
    with pytest.raises(InvalidModelOutput) as err:
        registry.call("slm", ASK, tools=TOOLS, tool_choice="auto")
    assert err.value.usage is not None and err.value.usage.input_tokens > 0
