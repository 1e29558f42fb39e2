"""One test per control-flow path of the verifier and escalation ladder (scripted tiers)."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tests.unit.engine_fixtures import compile_toy, registry
from tierflow.model_tiers import TierRunContext

MSG = "I want a refund of 50 EUR for my order"
OK_LABEL = {"label": "refund", "confidence": 0.9}
OK_AMOUNT = {"amount": "50", "currency": "EUR"}
OK_REPLY = {"text": "We will refund you."}


def run(graph, text=MSG, thread="t1", context=None):
    config = {"configurable": {"thread_id": thread}}
    return graph.invoke({"request": text}, config, context=context), config


def verdicts(out):
    return [(u["step"], u["tier"], u["verdict"]) for u in out["ledger"]]


def test_slm_passes_every_step():
    reg, _slm, top = registry({"classify": [OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, {})
    out, _ = run(compile_toy(reg))
    assert out["status"] == "done"
    assert out["results"]["1:extract"] == OK_AMOUNT
    assert set(out["decided_by"].values()) == {"slm"}
    assert verdicts(out) == [("0:classify", "slm", "pass"), ("1:extract", "slm", "pass"), ("2:reply", "slm", "pass")]
    assert top.calls == []
    assert all(u["cost_usd"] > 0 and u["input_tokens"] > 0 for u in out["ledger"])


def test_slm_fails_then_passes_on_retry_with_feedback():
    invented = {"amount": "500", "currency": "EUR"}
    reg, slm, top = registry({"classify": [OK_LABEL], "extract": [invented, OK_AMOUNT], "reply": [OK_REPLY]}, {})
    out, _ = run(compile_toy(reg))
    assert out["status"] == "done"
    assert verdicts(out)[1:3] == [("1:extract", "slm", "fail"), ("1:extract", "slm", "pass")]
    retry_prompt = slm.calls[2]["messages"]
    assert "rejected" in retry_prompt[-1].content and "amount='500'" in retry_prompt[-1].content
    assert [e["type"] for e in out["events"] if e["type"] in ("retry", "escalate")] == ["retry"]
    assert top.calls == []


@pytest.mark.parametrize("carry", [True, False])
def test_the_frontier_sees_the_slm_rejections_only_when_configured(carry: bool):
    bad = {"amount": "7", "currency": "EUR"}
    reg, slm, top = registry({"classify": [OK_LABEL], "extract": [bad, bad], "reply": [OK_REPLY]}, {"extract": [OK_AMOUNT]},
                             escalation={"feedback_to_next_tier": carry})
    out, _ = run(compile_toy(reg))
    assert out["decided_by"]["1:extract"] == "frontier"
    frontier_prompt = "\n".join(str(m.content) for m in top.calls[0]["messages"])
    assert ("amount='7'" in frontier_prompt) is carry
    assert len(top.calls[0]["messages"]) == (3 if carry else 2)  # system + prompt (+ one turn quoting the rejected answers)
    assert "amount='7'" in slm.calls[2]["messages"][-1].content  # the slm's own retry always sees why


def test_retries_exhausted_then_frontier_passes():
    bad = {"amount": "7", "currency": "EUR"}
    reg, _slm, _top = registry({"classify": [OK_LABEL], "extract": [bad, bad], "reply": [OK_REPLY]}, {"extract": [OK_AMOUNT]})
    out, _ = run(compile_toy(reg))
    assert out["status"] == "done"
    assert verdicts(out)[1:4] == [("1:extract", "slm", "fail"), ("1:extract", "slm", "fail"), ("1:extract", "frontier", "pass")]
    assert out["decided_by"]["1:extract"] == "frontier"
    esc = [e for e in out["events"] if e["type"] == "escalate"]
    assert esc and esc[0]["from"] == "slm" and esc[0]["to"] == "frontier"


def test_every_tier_fails_then_human_resumes_with_a_value():
    bad = {"amount": "7", "currency": "EUR"}
    reg, _, _ = registry({"classify": [OK_LABEL], "extract": [bad, bad], "reply": [OK_REPLY]}, {"extract": [bad, bad]})
    graph = compile_toy(reg, checkpointer=InMemorySaver())
    out, config = run(graph)
    [intr] = out["__interrupt__"]
    assert intr.value["type"] == "human_review" and intr.value["step"] == "extract"
    assert len(intr.value["candidates"]) == 4 and all("does not occur" in r for r in intr.value["reasons"])
    # An invalid human value is refused and asked again, with the error.
    again = graph.invoke(Command(resume={"action": "edit", "value": {"amount": 5}}), config)
    assert "invalid" in again["__interrupt__"][0].value["error"]
    final = graph.invoke(Command(resume={"action": "edit", "value": {"amount": "50", "currency": "EUR"}}), config)
    assert final["status"] == "done"
    assert final["decided_by"]["1:extract"] == "human"
    assert final["results"]["1:extract"] == OK_AMOUNT


def test_top_failure_with_fail_policy_is_a_typed_failure_in_state():
    bad = {"amount": "7", "currency": "EUR"}
    reg, _, _ = registry({"classify": [OK_LABEL], "extract": [bad, bad]}, {"extract": [bad, bad]}, escalation={"on_top_failure": "fail"})
    out, _ = run(compile_toy(reg))
    assert out["status"] == "failed"
    assert out["failure"]["step"] == "extract" and "does not occur" in out["failure"]["reason"]
    assert out["results"]["0:classify"] == OK_LABEL  # earlier work is kept


@pytest.mark.parametrize(
    ("fault", "slm_rows"),
    [
        # A refused connection sent no request, so it has no ledger row; the event says why.
        (ConnectionRefusedError("connection refused"), []),
        # A timed-out request reached the server: it is paid for, its prompt's tokens estimated.
        (TimeoutError("read timed out"), [("0:classify", "slm", "fault")]),
    ],
)
def test_an_unreachable_slm_falls_through_to_the_frontier(fault: Exception, slm_rows: list[tuple[str, str, str]]):
    reg, _slm, _top = registry({"classify": [fault], "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, {"classify": [OK_LABEL]})
    out, _ = run(compile_toy(reg))
    assert out["status"] == "done"
    assert verdicts(out)[: len(slm_rows) + 1] == [*slm_rows, ("0:classify", "frontier", "pass")]
    fallback = [e for e in out["events"] if e["type"] == "fallback"]
    assert fallback and "unreachable" in fallback[0]["reason"] and fallback[0]["from"] == "slm"
    if slm_rows:
        row = out["ledger"][0]
        assert row["error"] == "transport" and row["input_tokens"] > 0 and row["tokens_estimated"]


def test_local_only_step_never_calls_the_frontier():
    bad = {"amount": "7", "currency": "EUR"}
    reg, _slm, top = registry({"classify": [OK_LABEL], "extract": [bad, bad]}, {}, escalation={"on_top_failure": "fail"})
    out, _ = run(compile_toy(reg, local_only_extract=True))
    assert top.calls == []  # the frontier (local = false) was never asked anything
    assert out["status"] == "failed" and out["failure"]["step"] == "extract"


def test_budget_stop_keeps_partial_results():
    bad = {"amount": "7", "currency": "EUR"}
    reg, _, top = registry({"classify": [OK_LABEL], "extract": [bad, bad]}, {"extract": [OK_AMOUNT]},
                           budget={"max_frontier_calls": 0, "on_exhausted": "stop"})
    out, _ = run(compile_toy(reg))
    assert out["status"] == "stopped" and "frontier-call budget" in out["failure"]["reason"]
    # A typed failure in state: which limit, its value and the spend, at the step it stopped.
    assert {k: out["failure"][k] for k in ("kind", "budget", "limit", "spent", "item_id")} == {
        "kind": "budget", "budget": "max_frontier_calls", "limit": 0, "spent": 0, "item_id": "1:extract",
    }
    assert out["results"] == {"0:classify": OK_LABEL}
    assert top.calls == []


def test_a_spent_cost_budget_stops_the_run_before_the_next_call():
    reg, slm, _ = registry({"classify": [OK_LABEL], "extract": [OK_AMOUNT]}, {}, budget={"max_cost_usd": 1e-9})
    out, _ = run(compile_toy(reg))
    spent = out["ledger"][0]["cost_usd"]  # classify's call: the one the budget let through
    assert out["status"] == "stopped" and len(slm.calls) == 1
    assert out["failure"]["kind"] == "budget" and out["failure"]["budget"] == "max_cost_usd"
    assert out["failure"]["spent"] == spent > out["failure"]["limit"] == 1e-9
    assert out["failure"]["reason"].startswith("cost budget spent")
    assert [e["type"] for e in out["events"]][-1] == "budget_stop"


def test_budget_interrupt_asks_and_a_yes_continues():
    bad = {"amount": "7", "currency": "EUR"}
    reg, _, top = registry({"classify": [OK_LABEL], "extract": [bad, bad], "reply": [OK_REPLY]}, {"extract": [OK_AMOUNT]},
                           budget={"max_frontier_calls": 0, "on_exhausted": "interrupt"})
    graph = compile_toy(reg, checkpointer=InMemorySaver())
    out, config = run(graph)
    assert out["__interrupt__"][0].value["type"] == "budget"
    final = graph.invoke(Command(resume="yes"), config)
    assert final["status"] == "done" and final["decided_by"]["1:extract"] == "frontier"
    assert len(top.calls) == 1


def test_budget_cheaper_only_continues_below_the_frontier():
    reg, _slm, top = registry(
        {"classify": [OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, {},
        budget={"max_frontier_calls": 0, "on_exhausted": "cheaper_only"},
    )
    ctx = TierRunContext(policy="all-frontier")  # every step wants the frontier...
    out, _ = run(compile_toy(reg), context=ctx)
    assert out["status"] == "done"
    assert top.calls == []  # ...but the budget sends them all to the slm
    assert {e["type"] for e in out["events"]} >= {"budget_downgrade"}


def test_run_context_switches_policy_per_run():
    reg, slm, _top = registry({}, {"classify": [OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY]})
    out, _ = run(compile_toy(reg), context={"policy": "all-frontier"})
    assert out["status"] == "done" and slm.calls == []
    assert {u["tier"] for u in out["ledger"]} == {"frontier"}


def test_invalid_model_output_is_a_recorded_failed_verdict():
    reg, _, _ = registry({"classify": [{"label": "mortgage", "confidence": 0.5}, OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, {})
    out, _ = run(compile_toy(reg))
    assert out["status"] == "done"
    first = out["ledger"][0]
    assert first["verdict"] == "fail" and first["reason"].startswith("invalid")


@pytest.mark.parametrize("text,reason", [("", "empty"), ("   \n", "empty"), ("x" * 1_000_001, "limit"), ("a\x00b", "NUL")])
def test_bad_input_is_rejected_in_state_not_raised(text, reason):
    reg, slm, top = registry({}, {})
    out, _ = run(compile_toy(reg), text=text)
    assert out["status"] == "rejected" and reason in out["failure"]["reason"]
    assert slm.calls == [] and top.calls == []


def test_confidence_threshold_fails_low_confidence_labels():
    reg, _, _top = registry({"classify": [{"label": "refund", "confidence": 0.2}, {"label": "refund", "confidence": 0.3}],
                            "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, {"classify": [OK_LABEL]},
                           escalation={"confidence_threshold": 0.5})
    out, _ = run(compile_toy(reg))
    assert out["decided_by"]["0:classify"] == "frontier"
    assert "below the threshold" in out["ledger"][0]["reason"]


def test_a_new_run_on_the_same_thread_starts_from_clean_results():
    reg, _, _ = registry({"classify": [OK_LABEL, {"label": "card_lost", "confidence": 0.8}], "extract": [OK_AMOUNT, {}],
                          "reply": [OK_REPLY, OK_REPLY]}, {})
    graph = compile_toy(reg, checkpointer=InMemorySaver())
    first, config = run(graph, thread="same")
    second = graph.invoke({"request": "I lost my card"}, config)
    assert second["results"]["0:classify"]["label"] == "card_lost"
    assert second["results"]["1:extract"] == {"amount": None, "currency": None}
    assert {u["run_id"] for u in second["ledger"]} == {first["ledger"][0]["run_id"], second["ledger"][-1]["run_id"]}


def test_llm_judge_can_fail_a_step_and_its_call_is_accounted():
    import dataclasses

    from tests.unit.engine_fixtures import toy_workflow
    from tierflow.agents.spec import StepKind
    from tierflow.graphs.builder import build_graph

    wf = toy_workflow()
    steps = tuple(dataclasses.replace(s, judge=True) if s.kind == StepKind.RESPOND else s for s in wf.steps)
    wf = dataclasses.replace(wf, steps=steps)
    verdicts_by_judge = [{"ok": False, "reason": "the reply ignores the amount"}, {"ok": True, "reason": "fine"}]

    def judge(messages, tools):
        return verdicts_by_judge.pop(0)

    reg, _slm, _top = registry({"classify": [OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY, OK_REPLY]},
                             {}, escalation={"judge_tier": "frontier"})
    from tierflow.model_tiers.testing import ScriptedChatModel

    reg.set_model("frontier", ScriptedChatModel(replies=judge))
    out = build_graph(wf, registry=reg, resources={}).invoke({"request": MSG}, {"configurable": {"thread_id": "j"}})
    assert out["status"] == "done"
    judged = [u for u in out["ledger"] if u["role"] == "judge"]
    assert [u["verdict"] for u in judged] == ["fail", "pass"] and all(u["tier"] == "frontier" for u in judged)
    assert all(u["run_id"] == out["ledger"][0]["run_id"] and u["step"] == "2:reply" for u in judged)
    reply_verdicts = [(u["verdict"], u["reason"]) for u in out["ledger"] if u["step"] == "2:reply" and u["role"] == "respond"]
    assert reply_verdicts[0] == ("fail", "judge: the reply ignores the amount") and reply_verdicts[1][0] == "pass"


def test_a_step_with_a_schema_skips_a_tier_that_declares_no_structured_output():
    """classify, extract and reply all answer with a schema: an slm that declares no
    structured output is skipped (and never called), and the frontier answers them."""
    reg, slm, top = registry(
        {}, {"classify": [OK_LABEL], "extract": [OK_AMOUNT], "reply": [OK_REPLY]}, slm_capabilities={"structured_output": "none"}
    )
    out, _ = run(compile_toy(reg))
    assert out["status"] == "done" and set(out["decided_by"].values()) == {"frontier"}
    assert slm.calls == [] and len(top.calls) == 3


def test_the_ladder_names_the_missing_structured_output():
    from tierflow.agents.loop.ladder import usable_ladder
    from tierflow.agents.spec import StepNeeds

    reg, _, _ = registry({}, {}, slm_capabilities={"structured_output": "none"})
    usable, skipped = usable_ladder(reg.config, "extract", StepNeeds(structured=True))
    assert [t.name for t in usable] == ["frontier"]
    assert skipped == [("slm", "step needs structured output and this tier declares none")]
    # A step without a schema (a tool call, free text) may still run there.
    assert [t.name for t in usable_ladder(reg.config, "extract", StepNeeds(tools=True))[0]] == ["slm", "frontier"]


def test_a_direct_structured_call_on_such_a_tier_is_a_configuration_error():
    from langchain_core.messages import HumanMessage

    from tests.unit.engine_fixtures import Amount
    from tierflow.model_tiers import ConfigError

    reg, slm, _ = registry({}, {}, slm_capabilities={"structured_output": "none"})
    with pytest.raises(ConfigError, match="declares no structured output"):
        reg.call("slm", [HumanMessage("12 EUR")], schema=Amount)
    assert slm.calls == []
