import socket
from typing import Literal

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from tierflow.model_tiers import (
    InvalidModelOutput,
    MissingCredential,
    MissingDependency,
    NetworkBlocked,
    TierRegistry,
    TierUnreachable,
    build_chat_model,
    config_from_mapping,
)
from tierflow.model_tiers.testing import ScriptedChatModel, tool_call


class Label(BaseModel):
    label: Literal["refund", "card_lost"]
    confidence: float


@tool
def lookup_order(order_id: str) -> str:
    """Look an order up by its id."""
    return order_id


def config(**slm_options):
    return config_from_mapping(
        {
            "tiers": [
                {"name": "slm", "provider": "scripted", "model": "s", "options": slm_options or {"replies": ["x"]},
                 "price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0},
                {"name": "frontier", "provider": "scripted", "model": "f", "options": {"replies": ["y"]}},
            ],
            "roles": {r: "slm" for r in ("plan", "classify", "extract", "tool", "verify", "respond", "judge")},
        }
    )


def test_list_replies_in_order_and_usage_reported():
    m = ScriptedChatModel(replies=["one", "two"])
    assert m.invoke("hi").content == "one"
    out = m.invoke("hi again")
    assert out.content == "two"
    assert out.usage_metadata["input_tokens"] > 0 and out.usage_metadata["output_tokens"] > 0
    with pytest.raises(LookupError, match="ran out"):
        m.invoke("more")
    assert len(m.calls) == 3


def test_dict_replies_keyed_by_prompt_and_function_replies():
    m = ScriptedChatModel(replies={"lost my card": "card_lost", "*": "other"})
    assert m.invoke([HumanMessage("I lost my card yesterday")]).content == "card_lost"
    assert m.invoke([HumanMessage("hello")]).content == "other"
    f = ScriptedChatModel(replies=lambda msgs, tools: f"{len(msgs)} messages, {len(tools)} tools")
    assert f.invoke([SystemMessage("s"), HumanMessage("h")]).content == "2 messages, 0 tools"


def test_structured_output_and_bind_tools():
    m = ScriptedChatModel(replies=[{"label": "refund", "confidence": 0.9}, tool_call("lookup_order", {"order_id": "#W1"})])
    parsed = m.with_structured_output(Label).invoke("classify")
    assert parsed == Label(label="refund", confidence=0.9)
    msg = m.bind_tools([lookup_order]).invoke("where is #W1")
    assert msg.tool_calls[0]["name"] == "lookup_order" and msg.tool_calls[0]["args"] == {"order_id": "#W1"}
    assert m.calls[1]["tools"][0]["function"]["name"] == "lookup_order"


def test_registry_accounts_every_call_with_tier_prices():
    reg = TierRegistry(config(replies=[{"label": "card_lost", "confidence": 0.4}]))
    reply = reg.call("slm", [HumanMessage("I lost my card")], schema=Label)
    assert reply.value.label == "card_lost"
    u = reply.usage
    assert u.tier == "slm" and u.model == "s"
    assert u.cost_usd == pytest.approx((u.input_tokens * 1.0 + u.output_tokens * 2.0) / 1e6)


def test_registry_maps_schema_violation_to_invalid_output():
    reg = TierRegistry(config(replies=[{"label": "mortgage", "confidence": 2}]))
    with pytest.raises(InvalidModelOutput, match="slm"):
        reg.call("slm", [HumanMessage("x")], schema=Label)


def test_registry_maps_connection_failures_to_unreachable():
    reg = TierRegistry(config(replies=[ConnectionRefusedError("refused")]))
    with pytest.raises(TierUnreachable, match="slm"):
        reg.call("slm", [HumanMessage("x")])


def test_registry_tool_calls_and_set_model():
    reg = TierRegistry(config())
    reg.set_model("frontier", ScriptedChatModel(replies=[tool_call("lookup_order", {"order_id": "1"})]))
    reply = reg.call("frontier", [HumanMessage("x")], tools=[lookup_order])
    assert reply.value[0]["name"] == "lookup_order"


def test_scripted_tier_from_config_needs_replies():
    with pytest.raises(Exception, match=r"options\.replies"):
        TierRegistry(config_from_mapping({
            "tiers": [{"name": "slm", "provider": "scripted", "model": "s"}],
            "roles": {r: "slm" for r in ("plan", "classify", "extract", "tool", "verify", "respond", "judge")},
        })).model("slm")


def test_openai_tier_without_key_says_which_variable():
    cfg = config_from_mapping({
        "tiers": [{"name": "frontier", "provider": "openai", "model": "gpt-4o", "api_key_env": "MY_LLM_KEY"}],
        "roles": {r: "frontier" for r in ("plan", "classify", "extract", "tool", "verify", "respond", "judge")},
    })
    with pytest.raises(MissingCredential, match="MY_LLM_KEY"):
        build_chat_model(cfg.tier("frontier"), env={})
    model = build_chat_model(cfg.tier("frontier"), env={"MY_LLM_KEY": "sk-test"})
    assert model.model_name == "gpt-4o" and model.max_retries == 0


def test_ollama_tier_builds_chat_ollama_with_host():
    cfg = config_from_mapping({
        "tiers": [{"name": "slm", "provider": "ollama", "model": "qwen2.5:0.5b", "base_url": "http://127.0.0.1:9"}],
        "roles": {r: "slm" for r in ("plan", "classify", "extract", "tool", "verify", "respond", "judge")},
    })
    model = build_chat_model(cfg.tier("slm"))
    assert type(model).__name__ == "ChatOllama" and model.base_url == "http://127.0.0.1:9"


def test_missing_dependency_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("langchain_ollama"):
            raise ImportError("no module")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    cfg = config_from_mapping({
        "tiers": [{"name": "slm", "provider": "ollama", "model": "m"}],
        "roles": {r: "slm" for r in ("plan", "classify", "extract", "tool", "verify", "respond", "judge")},
    })
    with pytest.raises(MissingDependency, match="pip install langchain-ollama"):
        build_chat_model(cfg.tier("slm"))


def test_kill_switch_blocks_unit_tests_from_the_network():
    s = socket.socket()
    try:
        with pytest.raises(NetworkBlocked):
            s.connect(("127.0.0.1", 11434))
    finally:
        s.close()
