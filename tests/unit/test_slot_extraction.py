"""slot_extraction: span grounding, people and time checks, local_only, offsets in the result."""

from __future__ import annotations

import pytest

from tests.unit.engine_fixtures import registry
from tierflow.graphs.builder import build_graph
from tierflow.graphs.slot_extraction import WORKFLOW, find_span, is_time_expression, parse_people, parse_time

MSG = "Hi, table for 4 people next Friday at 7.30pm please, name is Ana Ruiz"


def run(slm_replies, frontier_replies=(), **config):
    reg, slm, top = registry({"extract": list(slm_replies)}, {"extract": list(frontier_replies)}, **config)
    graph = build_graph(WORKFLOW, registry=reg, resources={})
    return graph.invoke({"request": MSG}, {"configurable": {"thread_id": "s"}}), slm, top


# The scripted fixtures find a step by "[name]" in its system prompt; slot_extraction's
# prompt is plain text, so match on the step's own wording instead.
@pytest.fixture(autouse=True)
def _tag_prompt(monkeypatch):
    import tierflow.agents.prompts as prompts

    real = prompts.step_messages

    def tagged(spec, inp, feedback):
        messages = real(spec, inp, feedback)
        messages[0].content = f"[{spec.name}] " + messages[0].content
        return messages

    monkeypatch.setattr("tierflow.agents.loop.step.step_messages", tagged)


def test_valid_slots_pass_with_offsets():
    good = {"date": "next Friday", "time": "7.30pm", "people": "4 people", "first_name": "Ana", "last_name": "Ruiz"}
    out, _, top = run([good])
    assert out["status"] == "done" and top.calls == []
    final = out["final"]
    assert final["slots"]["people"] == {"text": "4 people", "start": 14, "end": 22}
    assert MSG[final["slots"]["last_name"]["start"] : final["slots"]["last_name"]["end"]] == "Ruiz"
    assert final["people_count"] == 4 and final["time_24h"] == "19:30"


def test_invented_slot_fails_then_absent_slot_passes():
    invented = {"date": "next Friday", "time": "8pm"}
    out, _slm, _ = run([invented, {"date": "next Friday"}])
    assert out["ledger"][0]["verdict"] == "fail" and "time='8pm' is not a span" in out["ledger"][0]["reason"]
    assert out["status"] == "done" and set(out["final"]["slots"]) == {"date"}


def test_people_must_be_positive_and_time_must_parse():
    zero = {"people": "zero"}  # a span of nothing in MSG; use values that are spans but wrong
    out, _, _ = run([{"people": "next"}, {"time": "please"}, {"people": "4"}], escalation={"max_retries": 2})
    reasons = [u["reason"] for u in out["ledger"]]
    assert "does not give a positive number of guests" in reasons[0]
    assert "is not a time of day" in reasons[1]
    assert out["status"] == "done"
    del zero


def test_pii_step_never_reaches_a_non_local_tier():
    bad = {"first_name": "Maria"}
    out, _, top = run([bad, bad], [{"first_name": "Ana"}], escalation={"on_top_failure": "fail"})
    assert top.calls == []  # the scripted frontier is declared local = false
    assert out["status"] == "failed"


@pytest.mark.parametrize("text,expected", [("7pm", (19, 0)), ("19:30", (19, 30)), ("noon", (12, 0)), ("half past 8", (8, 30)),
                                           ("0730pm", (19, 30)), ("quarter to nine", (8, 45)), ("evening", None), ("25:00", None)])
def test_parse_time(text, expected):
    assert parse_time(text) == expected


def test_relative_times_are_times():
    assert is_time_expression("in half an hour") and is_time_expression("now") and not is_time_expression("soon-ish")


@pytest.mark.parametrize("text,expected", [("5 adults and 1 child", 6), ("six of us", 6), ("me and my wife", 2),
                                           ("me and my twins", 3), ("a few people", None), ("11", 11)])
def test_parse_people(text, expected):
    assert parse_people(text) == expected


def test_find_span_ignores_case_and_punctuation():
    assert find_span("Booking for ANA.", "ana.") == (12, 15)
    assert find_span("Booking", "") is None


@pytest.mark.parametrize("text", ["19th of August", "May 3", "the 21st"])
def test_dates_are_not_times(text):
    assert parse_time(text) is None and not is_time_expression(text)
