"""The `openai` provider (ChatOpenAI) against a real OpenAI-compatible server: llama_cpp.server.

The structured-output method follows the tier's declared capability: llama_cpp.server
handles `function_calling` (a grammar for the named tool) and rejects `json_schema`
response formats with HTTP 500, which must surface as a typed error, not a crash.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from tests.conftest import REPO_ROOT
from tests.integration.conftest import server_tier
from tests.integration.provider_probes import TOOLS, TicketTriage, lookup_order
from tests.servers.process import ServerProcess
from tierflow.model_tiers import TierRegistry, TierUnreachable, Usage

TICKET = "I was charged twice for order A-1234 and want one of the payments refunded."


def openai_tier(server: ServerProcess, method: str = "function_calling") -> dict[str, Any]:
    # a local server: no key
    return server_tier("remote", "openai", "smollm2", f"{server.url}/v1", method=method, price=(2.5, 10.0), api_key_env="")


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
    # llama_cpp.server returns `logprobs` when asked (the tier's default): the text's
    # geometric-mean token probability.
    assert reply.usage.confidence is not None and 0.0 < reply.usage.confidence <= 1.0
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


def test_free_tool_choice_on_a_named_only_server_is_select_then_call(
    llama_cpp_server: ServerProcess, make_tier_config: Any
) -> None:
    """With `tool_choice = "named"` declared, "required" among two tools becomes a choice of
    the function (structured output over the names) and then its named call: a real call,
    where the server alone would answer in text. Both requests are in the one usage."""
    tier = openai_tier(llama_cpp_server)
    tier["capabilities"] = {**tier["capabilities"], "tool_choice": "named"}
    registry = TierRegistry(make_tier_config(tier))
    reply = registry.call(
        "remote", [HumanMessage("Refund 20 dollars for order A-1234.")], tools=list(TOOLS.values()), tool_choice="any"
    )
    [call] = reply.value
    assert call["name"] in TOOLS
    TOOLS[call["name"]].args_schema.model_validate(call["args"])  # type: ignore[union-attr]
    _assert_reported_usage(reply.usage, max_output=128)


def test_the_function_calling_graph_over_the_server(llama_cpp_server: ServerProcess, make_tier_config: Any) -> None:
    """The caller's functions, a real OpenAI-compatible server on every tier: the run ends
    with a decision (a schema-valid call, no call, or a human's turn), and the ledger holds
    the server's reported tokens."""
    from langgraph.checkpoint.memory import InMemorySaver

    from tierflow.agents.client_tools import call_problem, parse_functions
    from tierflow.graphs.function_calling import build

    tier = openai_tier(llama_cpp_server)
    tier["capabilities"] = {**tier["capabilities"], "tool_choice": "named"}
    functions = json.loads((REPO_ROOT / "samples" / "functions.json").read_text(encoding="utf-8"))
    graph = build(registry=TierRegistry(make_tier_config(tier)), resources={}, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "fc-openai"}}
    out = graph.invoke({"request": "What is the status of order #W2378156?", "functions": functions}, config)
    assert out["ledger"] and all(u["tier"] == "remote" and not u["tokens_estimated"] for u in out["ledger"])
    if out["status"] == "done":
        for call in out["final"]["calls"]:
            assert call_problem([f.model_dump() for f in parse_functions(functions)], call["name"], call["arguments"]) is None
    else:
        assert graph.get_state(config).tasks[0].interrupts[0].value["type"] == "human_review"


def test_doctor_finds_a_server_that_only_calls_named_tools(llama_cpp_server: ServerProcess, make_tier_config: Any) -> None:
    """llama_cpp.server answers "required" in text: doctor says so and names the fix; with
    `tool_choice = "named"` declared, the same probe goes through select-then-call."""
    from tierflow.model_tiers.doctor import diagnose

    auto = openai_tier(llama_cpp_server)
    [check] = diagnose(make_tier_config(auto), env={})
    assert not check.ok and "required tool choice in text" in check.detail
    assert 'capabilities.tool_choice = "named"' in check.fix
    named = {**auto, "capabilities": {**auto["capabilities"], "tool_choice": "named"}}
    [check] = diagnose(make_tier_config(named), env={})
    assert check.ok and "tool calls ok" in check.detail, check
