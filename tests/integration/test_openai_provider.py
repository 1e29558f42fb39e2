"""The `openai` provider (ChatOpenAI) against a real OpenAI-compatible server: llama_cpp.server.

The structured-output method follows the tier's declared capability: llama_cpp.server
handles `function_calling` (a grammar for the named tool) and rejects `json_schema`
response formats with HTTP 500, which must surface as a typed error, not a crash.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from model_tiers import TierRegistry, TierUnreachable, Usage
from tests.integration.provider_probes import TicketTriage, lookup_order
from tests.servers.process import ServerProcess

TICKET = "I was charged twice for order A-1234 and want one of the payments refunded."


def openai_tier(server: ServerProcess, method: str = "function_calling") -> dict[str, Any]:
    return {
        "name": "remote",
        "provider": "openai",
        "model": "smollm2",
        "base_url": f"{server.url}/v1",
        "api_key_env": "",  # a local server: no key
        "timeout_s": 300,  # a bound for a hung server; the two CPU cores may be shared
        "max_output_tokens": 64,
        "price_input_per_mtok": 2.5,
        "price_output_per_mtok": 10.0,
        "capabilities": {"tools": True, "structured_output": method, "context_window": 2048},
    }


@pytest.fixture(scope="module")
def registry(llama_cpp_server: ServerProcess, make_tier_config: Any) -> TierRegistry:
    return TierRegistry(make_tier_config(openai_tier(llama_cpp_server)))


def _assert_reported_usage(usage: Usage, max_output: int = 64) -> None:
    """Token counts come from the server's `usage`, not from the ledger's estimate."""
    assert usage.tier == "remote" and usage.provider == "openai"
    assert not usage.tokens_estimated
    assert usage.input_tokens > 0 and 0 < usage.output_tokens <= max_output
    assert usage.cost_usd == pytest.approx((usage.input_tokens * 2.5 + usage.output_tokens * 10.0) / 1e6)


def test_structured_output_by_function_calling(registry: TierRegistry) -> None:
    reply = registry.call(
        "remote", [SystemMessage("Classify the support ticket."), HumanMessage(TICKET)], schema=TicketTriage
    )
    assert isinstance(reply.value, TicketTriage)
    _assert_reported_usage(reply.usage)


def test_named_tool_call(registry: TierRegistry) -> None:
    # llama_cpp.server only constrains the reply to a call when the tool is named
    # ("auto"/"required" give free text with a chat template that has no tool syntax).
    reply = registry.call(
        "remote", [HumanMessage("Where is order A-1234?")], tools=[lookup_order], tool_choice="lookup_order"
    )
    assert [c["name"] for c in reply.value] == ["lookup_order"]
    lookup_order.args_schema.model_validate(reply.value[0]["args"])  # type: ignore[union-attr]
    _assert_reported_usage(reply.usage)


def test_plain_text(registry: TierRegistry) -> None:
    reply = registry.call("remote", [HumanMessage("Say hello to the customer in one short sentence.")])
    assert isinstance(reply.value, str) and reply.value.strip()
    _assert_reported_usage(reply.usage)


def test_json_schema_method_rejected_by_server_is_a_typed_error(
    llama_cpp_server: ServerProcess, make_tier_config: Any
) -> None:
    """llama_cpp.server answers HTTP 500 to response_format=json_schema.

    A 5xx is a fault of the endpoint (errors.TierUnreachable: the escalation engine falls
    through to the next tier); the reason carries the server's message so the operator can
    see that the tier's declared structured_output method is what it rejects.
    """
    registry = TierRegistry(make_tier_config(openai_tier(llama_cpp_server, method="json_schema")))
    with pytest.raises(TierUnreachable) as caught:
        registry.call("remote", [HumanMessage(TICKET)], schema=TicketTriage)
    assert caught.value.tier == "remote"
    assert isinstance(caught.value.__cause__, openai.InternalServerError)
    assert "500" in caught.value.reason and "response_format" in caught.value.reason
