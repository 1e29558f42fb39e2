"""Provider errors by meaning, secrets masked, typed errors that pickle, and the engine's
answers to its own bugs: a crashing check stops the run, approve with nothing to approve
is refused, unknown run-context fields are named on every path."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel

from tests.unit.engine_fixtures import compile_toy, registry, toy_workflow
from tests.unit.test_engine_paths import OK_AMOUNT, OK_LABEL, OK_REPLY, run
from tierflow.agents.spec import Check
from tierflow.graphs.builder import build_graph
from tierflow.model_tiers import (
    ConfigError,
    InvalidModelOutput,
    TierMisconfigured,
    TierRegistry,
    TierUnreachable,
    config_from_mapping,
    redact,
    redact_value,
)
from tierflow.model_tiers.provider_errors import classify_provider_error
from tierflow.model_tiers.secrets import register_secret
from tierflow.model_tiers.spec import TierSpec
from tierflow.model_tiers.testing import ScriptedChatModel

SPEC = TierSpec(name="remote", provider="openai", model="gpt-x", base_url="http://127.0.0.1:9/v1")
REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def _status_error(status: int, body: str = "nope") -> openai.APIStatusError:
    response = httpx.Response(status, request=REQUEST, json={"error": {"message": body}})
    cls = {401: openai.AuthenticationError, 403: openai.PermissionDeniedError, 404: openai.NotFoundError,
           429: openai.RateLimitError, 400: openai.BadRequestError}.get(status, openai.InternalServerError)
    return cls(body, response=response, body=None)


@pytest.mark.parametrize(
    ("exc", "kind", "sent"),
    [
        (_status_error(401), "config", True),
        (_status_error(403), "config", True),
        (_status_error(404), "config", True),
        (_status_error(429), "unavailable", True),
        (_status_error(500), "unavailable", True),
        (_status_error(503), "unavailable", True),
        (_status_error(400), "rejected", True),
        (openai.APITimeoutError(request=REQUEST), "unavailable", True),
        (httpx.ConnectError("refused"), "unavailable", False),
        (ConnectionRefusedError("refused"), "unavailable", False),
        (httpx.ReadTimeout("slow"), "unavailable", True),
    ],
)
def test_provider_errors_are_classified_by_what_they_mean(exc: BaseException, kind: str, sent: bool) -> None:
    failure = classify_provider_error(SPEC, exc, key_env="OPENAI_API_KEY")
    assert failure is not None and (failure.kind, failure.reached_server) == (kind, sent)


def test_an_api_connection_error_around_a_refused_connect_sent_nothing() -> None:
    try:
        try:
            raise httpx.ConnectError("connection refused")
        except httpx.ConnectError as inner:
            raise openai.APIConnectionError(request=REQUEST) from inner
    except openai.APIConnectionError as outer:
        failure = classify_provider_error(SPEC, outer)
    assert failure is not None and failure.kind == "unavailable" and not failure.reached_server


def test_a_bug_is_not_classified() -> None:
    assert classify_provider_error(SPEC, AttributeError("oops")) is None


def test_config_messages_say_what_to_fix() -> None:
    missing = classify_provider_error(SPEC, _status_error(404, "model gpt-x not found"))
    assert missing and "no model 'gpt-x'" in missing.message and "tierflow doctor" in missing.message
    refused = classify_provider_error(SPEC, _status_error(401), key_env="MY_KEY")
    assert refused and "$MY_KEY" in refused.message and "api_key_env" in refused.message


def _one_tier_registry(replies: list[Any], **tier: Any) -> tuple[TierRegistry, ScriptedChatModel]:
    spec = {"name": "slm", "provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "", **tier}
    roles = dict.fromkeys(["plan", "classify", "extract", "tool", "verify", "respond", "judge"], "slm")
    reg = TierRegistry(config_from_mapping({"tiers": [spec], "roles": roles}))
    model = ScriptedChatModel(replies=replies)
    reg.set_model("slm", model)
    return reg, model


class Pick(BaseModel):
    label: str


def test_an_outage_cools_the_tier_down_and_no_request_is_sent_meanwhile() -> None:
    reg, model = _one_tier_registry([_status_error(429), {"label": "a"}], cooldown_s=30)
    with pytest.raises(TierUnreachable) as first:
        reg.call("slm", [HumanMessage("x")], schema=Pick)
    assert first.value.usage is not None and first.value.usage.error == "HTTP 429"
    with pytest.raises(TierUnreachable, match="cooling down"):
        reg.call("slm", [HumanMessage("x")], schema=Pick)
    assert len(model.calls) == 1 and reg.cooldown_left("slm") > 25


def test_a_wrong_model_name_is_a_configuration_error_with_its_usage() -> None:
    reg, _ = _one_tier_registry([_status_error(404)])
    with pytest.raises(TierMisconfigured) as caught:
        reg.call("slm", [HumanMessage("x")], schema=Pick)
    assert isinstance(caught.value, ConfigError) and caught.value.status == 404
    assert caught.value.usage is not None and reg.cooldown_left("slm") == 0


def test_unknown_fields_and_broken_tool_calls_are_invalid_output_that_cost_tokens() -> None:
    broken = AIMessage(content="", invalid_tool_calls=[{"name": "Pick", "args": '{"label": ', "id": "c1", "error": "bad"}])
    reg, _ = _one_tier_registry([{"label": "a", "delete_all_orders": True}, broken])
    with pytest.raises(InvalidModelOutput, match="does not define: \\['delete_all_orders'\\]") as extra:
        reg.call("slm", [HumanMessage("x")], schema=Pick)
    assert extra.value.usage is not None and extra.value.usage.output_tokens > 0
    with pytest.raises(InvalidModelOutput, match="not valid JSON"):
        reg.call("slm", [HumanMessage("x")], schema=Pick)


def test_typed_errors_pickle_whole() -> None:
    reg, _ = _one_tier_registry([_status_error(401)])
    with pytest.raises(TierMisconfigured) as caught:
        reg.call("slm", [HumanMessage("x")], schema=Pick)
    for err in (caught.value, TierUnreachable("slm", "down"), InvalidModelOutput("slm", "bad", raw="{"), ConfigError("x", source="f")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.__dict__.keys() == err.__dict__.keys()


def test_secrets_are_masked_by_value_and_by_shape() -> None:
    register_secret("my-very-own-key-0001")
    text = "sent my-very-own-key-0001; proxy said Authorization: Bearer abcdefghij0123 and api_key='zzzzzzzz9999'"
    masked = redact(text)
    assert "my-very-own-key-0001" not in masked and "abcdefghij0123" not in masked and "zzzzzzzz9999" not in masked
    assert "Bearer <redacted>" in masked
    assert redact("a basic question about a secret plan") == "a basic question about a secret plan"
    assert redact_value({"events": [{"reason": "key sk-abcdefghijklmnopqrstu"}], "n": 3}) == {"events": [{"reason": "key <redacted>"}], "n": 3}


# -- the engine -------------------------------------------------------------------------------


def test_a_check_that_crashes_stops_the_run_as_a_bug_and_is_never_fed_back() -> None:
    def explodes(value: Any, inp: Any) -> str | None:
        raise KeyError("missing field")

    workflow = toy_workflow()
    steps = tuple(
        dataclasses.replace(s, checks=(*s.checks, Check("explodes", explodes))) if s.name == "extract" else s for s in workflow.steps
    )
    reg, _slm, top = registry({"classify": [OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, {})
    out, _ = run(build_graph(dataclasses.replace(workflow, steps=steps), registry=reg, resources={}))
    assert out["status"] == "error"
    assert out["failure"]["kind"] == "bug" and "explodes" in out["failure"]["reason"]
    assert "KeyError" in out["failure"]["traceback"]
    assert top.calls == []  # no frontier call paid for a bug
    assert [e for e in out["events"] if e["type"] == "run_error"]


def test_approve_with_no_usable_candidate_is_refused_with_what_to_do() -> None:
    from langgraph.types import Command

    down = ConnectionRefusedError("refused")
    reg, _, _ = registry({"classify": [down]}, {"classify": [down]}, escalation={"on_top_failure": "interrupt"})
    graph = compile_toy(reg, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "approve-nothing"}}
    graph.invoke({"request": "refund 12 EUR"}, config)
    [task] = [t for t in graph.get_state(config).tasks if t.interrupts]
    assert "no tier produced a candidate" in task.interrupts[0].value["how_to_answer"]
    graph.invoke(Command(resume={"action": "approve"}), config)
    state = graph.get_state(config)
    assert state.next == ("human_review",)
    assert "edit" in state.values["review_error"] and "reject" in state.values["review_error"]
    graph.invoke(Command(resume={"action": "reject"}), config)
    assert graph.get_state(config).values["status"] == "failed"


def test_unknown_run_context_fields_get_tierflows_message_on_direct_invoke() -> None:
    reg, _, _ = registry({"classify": [OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, {})
    graph = compile_toy(reg)
    with pytest.raises(ConfigError, match=r"unknown run-context fields \['bogus_field'\]; allowed: policy"):
        graph.invoke({"request": "refund 12 EUR"}, context={"bogus_field": 1})


def test_a_failed_task_is_stored_by_langgraph_with_its_secrets_masked() -> None:
    """An unclassified provider exception is a bug: it raises out of the node, and LangGraph
    writes the task's error into the checkpoint. The key it quotes must not be in there."""
    secret = "sk-task-error-" + "9" * 20
    register_secret(secret)
    saver = InMemorySaver()
    reg, _, _ = registry({"classify": [RuntimeError(f"proxy echoed Authorization: Bearer {secret}")]}, {})
    graph = compile_toy(reg, checkpointer=saver)
    config = {"configurable": {"thread_id": "bug"}}
    with pytest.raises(RuntimeError) as caught:
        graph.invoke({"request": "refund 12 EUR"}, config)
    assert secret not in str(caught.value)
    stored = repr(list(saver.storage.items())) + repr(list(saver.writes.items()))
    assert "proxy echoed" in stored and secret not in stored


def _streamed_and_recorded(graph: Any, payload: Any, config: dict[str, Any], context: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    streamed: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for mode, chunk in graph.stream(payload, config, context=context, stream_mode=["custom", "values"]):
        if mode == "custom":
            streamed.append(chunk)
        else:
            values = chunk
    recorded = list(values.get("events") or [])
    return [e for e in streamed if e["type"] not in ("model_call", "proposal", "final")], recorded


def test_every_recorded_event_is_streamed_once_in_order() -> None:
    """Across the paths that record each kind: pass, retry, escalate, fallback, top, human
    review and its decisions, budgets, a run error, a rejected input."""
    from langgraph.types import Command

    from tierflow.agents.loop.events import EVENT_KINDS

    bad = {"amount": "7", "currency": "EUR"}
    ok = {"amount": "12", "currency": "EUR"}
    seen: set[str] = set()
    scenarios = [
        ({"classify": [OK_LABEL], "extract": [bad, bad]}, {"extract": [ok]}, {}, None, None),
        ({"classify": [ConnectionRefusedError("x")], "extract": [ok], "reply": [OK_REPLY]}, {"classify": [OK_LABEL]}, {}, None, None),
        ({"classify": [OK_LABEL], "extract": [bad, bad]}, {"extract": [bad, bad]}, {"escalation": {"on_top_failure": "interrupt"}}, None,
         [{"action": "edit", "value": ok}]),
        ({"classify": [OK_LABEL], "extract": [bad, bad]}, {"extract": [bad, bad]}, {"escalation": {"on_top_failure": "interrupt"}}, None,
         [{"action": "reject"}]),
        ({"classify": [OK_LABEL], "extract": [bad, bad]}, {"extract": [ok]}, {"budget": {"max_frontier_calls": 0, "on_exhausted": "stop"}}, None, None),
        ({"classify": [OK_LABEL], "extract": [bad, bad]}, {"extract": [ok]},
         {"budget": {"max_frontier_calls": 0, "on_exhausted": "interrupt"}}, None, ["yes"]),
        ({"classify": [_status_error(401)]}, {}, {}, None, None),
    ]
    for i, (slm, top, config, context, answers) in enumerate(scenarios):
        reg, _, _ = registry({"reply": [OK_REPLY], **slm}, {"reply": [OK_REPLY], **top}, **config)
        graph = compile_toy(reg, checkpointer=InMemorySaver())
        thread = {"configurable": {"thread_id": f"events-{i}"}}
        streamed, recorded = _streamed_and_recorded(graph, {"request": "refund 12 EUR"}, thread, context)
        for answer in answers or []:
            more, recorded = _streamed_and_recorded(graph, Command(resume=answer), thread, context)
            streamed += more
        assert streamed == recorded, (i, [e["type"] for e in streamed], [e["type"] for e in recorded])
        seen |= {e["type"] for e in recorded}
    reg, _, _ = registry({}, {})
    streamed, recorded = _streamed_and_recorded(compile_toy(reg), {"request": "   "}, {"configurable": {"thread_id": "empty"}})
    assert streamed == recorded
    seen |= {e["type"] for e in recorded}
    expected = {"route", "verdict", "retry", "escalate", "fallback", "top", "human_decision", "human_reject",
                "budget_stop", "budget_approved", "run_error", "rejected_input"}
    assert expected <= seen <= EVENT_KINDS, sorted(expected - seen)
