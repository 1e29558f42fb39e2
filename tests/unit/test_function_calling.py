"""The function_calling graph: the caller's functions in the request, one verified call (or
none) returned, never executed. Scripted tiers; the BFCL data is read for the conversions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tests.conftest import REPO_ROOT
from tests.unit.engine_fixtures import registry
from tierflow.agents.client_tools import MAX_FUNCTIONS, call_problem, openai_tools, parse_functions
from tierflow.agents.workers import tool_caller
from tierflow.evals.datasets import default_dataset_file
from tierflow.evals.datasets.bfcl import bfcl_json_schema, load_bfcl
from tierflow.graphs.function_calling import WORKFLOW, build, numbers_in_text, ungrounded_numbers
from tierflow.model_tiers.testing import tool_call

CONVERT = {
    "name": "convert_currency",
    "description": "Convert money between currencies.",
    "parameters": {
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "from_currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
            "to_currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
            "rounding": {"type": "integer", "default": 2},
        },
        "required": ["amount", "from_currency", "to_currency"],
    },
}
STATUS = {"type": "function", "function": {"name": "order_status", "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}
FUNCTIONS = [CONVERT, STATUS]
REQUEST = "How much is 250 EUR in USD?"
GOOD = tool_call("convert_currency", {"amount": 250, "from_currency": "EUR", "to_currency": "USD"})


def queue(replies: Sequence[Any]):
    """Reply function: the tier's replies in order, whatever the step."""
    pending = list(replies)

    def reply(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
        if not pending:
            raise AssertionError("no scripted reply left")
        return pending.pop(0)

    return reply


def run(slm: Sequence[Any], frontier: Sequence[Any] = (), payload: dict[str, Any] | None = None, **config: Any):
    reg, slm_model, top_model = registry(slm, frontier, script=queue, **config)
    graph = build(registry=reg, resources={}, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "fc"}}
    out = graph.invoke(payload or {"request": REQUEST, "functions": FUNCTIONS}, cfg)
    return out, graph, cfg, slm_model, top_model


# -- the caller's functions ------------------------------------------------------------------


def test_functions_are_accepted_in_openai_or_bare_form():
    functions = parse_functions(FUNCTIONS)
    assert [f.name for f in functions] == ["convert_currency", "order_status"]
    assert openai_tools(functions)[1] == {"type": "function", "function": {"name": "order_status", "description": "", **STATUS["function"]}}


@pytest.mark.parametrize(
    ("functions", "message"),
    [
        ("convert_currency", "must be a list"),
        ([], "is empty"),
        ([CONVERT, CONVERT], "declared more than once: convert_currency"),
        ([{**CONVERT, "name": "math.sqrt"}], "functions[0] is invalid: name"),
        ([{**CONVERT, "parameters": {"type": "array"}}], "of type 'object'"),
        ([{**CONVERT, "parameters": {"type": "object", "properties": {"x": {"type": "decimal"}}}}], "not a valid JSON Schema at properties/x/type"),
        ([{**CONVERT, "extra": 1}], "functions[0] is invalid: extra"),
        ([{**CONVERT, "name": f"f{i}"} for i in range(MAX_FUNCTIONS + 1)], f"the limit is {MAX_FUNCTIONS}"),
    ],
)
def test_bad_functions_are_refused_with_the_reason(functions: Any, message: str):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        parse_functions(functions)
    assert "Value error," not in str(err.value)


def test_a_call_is_checked_against_the_declared_schema():
    functions = [f.model_dump() for f in parse_functions(FUNCTIONS)]
    assert call_problem(functions, "convert_currency", {"amount": 3, "from_currency": "EUR", "to_currency": "USD"}) is None
    assert "unknown function 'refund'" in call_problem(functions, "refund", {})
    assert "at amount: 'ten' is not of type 'number'" in call_problem(functions, "convert_currency", {"amount": "ten", "from_currency": "EUR", "to_currency": "USD"})
    assert "'to_currency' is a required property" in call_problem(functions, "convert_currency", {"amount": 3, "from_currency": "EUR"})
    assert "'JPY' is not one of" in call_problem(functions, "convert_currency", {"amount": 3, "from_currency": "JPY", "to_currency": "USD"})


def test_numbers_a_reader_sees_in_the_request():
    seen = numbers_in_text("Invest $1.2M at 5% for two years; cash flows [200,300]; 50mH coil; 1,000 units")
    assert {1.2e6, 5.0, 0.05, 2.0, 200.0, 300.0, 1000.0} <= seen
    assert 7.0 not in seen and 1200.0 not in seen


def test_invented_numbers_are_named_defaults_are_not():
    params = CONVERT["parameters"]
    assert ungrounded_numbers({"amount": 250, "rounding": 2}, params, REQUEST) == []
    assert ungrounded_numbers({"amount": 25.0, "rounding": 3}, params, REQUEST) == ["amount=25", "rounding=3"]
    assert ungrounded_numbers({"amount": True}, params, REQUEST) == []  # a boolean is not a number


# -- the graph ------------------------------------------------------------------------------


def test_the_slm_call_is_verified_and_returned_not_executed():
    out, graph, _, slm, _ = run([GOOD])
    assert out["status"] == "done"
    assert out["final"]["calls"] == [{"name": "convert_currency", "arguments": {"amount": 250, "from_currency": "EUR", "to_currency": "USD"}}]
    assert out["results"]["0:call"]["status"] == "proposed" and out["decided_by"] == {"0:call": "slm"}
    assert "act" not in graph.get_graph().nodes  # nothing is executed here
    assert [t["function"]["name"] for t in slm.calls[0]["tools"]] == ["convert_currency", "order_status"]
    assert slm.calls[0]["tool_choice"] == "auto"  # the step may decline


def test_a_schema_violation_is_retried_with_the_reason_then_escalated():
    bad = tool_call("convert_currency", {"amount": "250", "from_currency": "EUR", "to_currency": "USD"})
    out, _, _, slm, _top = run([bad, bad], [GOOD])
    verdicts = [(u["tier"], u["verdict"]) for u in out["ledger"]]
    assert verdicts == [("slm", "fail"), ("slm", "fail"), ("frontier", "pass")]
    assert "at amount: '250' is not of type 'number'" in out["ledger"][0]["reason"]
    assert "'250' is not of type 'number'" in slm.calls[1]["messages"][-1].content  # the retry sees why
    assert out["decided_by"] == {"0:call": "frontier"} and out["status"] == "done"


def test_an_invented_number_fails_the_grounding_check():
    invented = tool_call("convert_currency", {"amount": 2500, "from_currency": "EUR", "to_currency": "USD"})
    out, *_ = run([invented], [GOOD], escalation={"max_retries": 0})
    assert "amount=2500: the request does not state" in out["ledger"][0]["reason"]
    assert out["final"]["calls"][0]["arguments"]["amount"] == 250


def test_no_call_is_a_valid_answer_when_no_function_fits():
    out, _, _, _slm, _ = run(["None of these functions can book a flight."], payload={"request": "Book me a flight to Oslo", "functions": FUNCTIONS})
    assert out["status"] == "done" and out["final"]["calls"] == []
    assert out["final"]["reply"] == "None of these functions can book a flight."
    assert out["results"]["0:call"]["status"] == "no_call" and out["ledger"][0]["verdict"] == "pass"


def test_a_step_that_may_not_decline_fails_a_reply_without_a_call():
    from tierflow.agents.spec import StepKind, StepSpec
    from tierflow.graphs.builder import Workflow, build_graph

    step = tool_caller("call", instructions="call", client_tools=True)
    assert not step.may_decline and step.executes_tools is False
    with pytest.raises(ValueError, match="client_tools and may_decline apply to tool steps only"):
        StepSpec(name="x", kind=StepKind.ACTION, role="tool", run=lambda inp: 1, client_tools=True)
    must_call = Workflow(name="must_call", description="", steps=(step,), default_plan=WORKFLOW.default_plan)
    reg, slm, _ = registry(["Sorry, no.", GOOD], [], script=queue)
    graph = build_graph(must_call, registry=reg, resources={}, checkpointer=InMemorySaver())
    out = graph.invoke({"request": REQUEST, "functions": FUNCTIONS}, {"configurable": {"thread_id": "m"}})
    assert slm.calls[0]["tool_choice"] == "any"  # a call is required
    assert [(u["tier"], u["verdict"]) for u in out["ledger"]] == [("slm", "fail"), ("slm", "pass")]
    assert "no tool call" in out["ledger"][0]["reason"] and out["results"]["0:call"]["status"] == "proposed"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"request": REQUEST}, "must be a list"),
        ({"request": REQUEST, "functions": []}, "is empty"),
        ({"request": REQUEST, "functions": [{"name": "a b"}]}, "functions[0] is invalid"),
        ({"request": "  ", "functions": FUNCTIONS}, "the request is empty"),
    ],
)
def test_bad_input_is_rejected_in_state_without_a_model_call(payload: dict[str, Any], reason: str):
    out, _, _, slm, _ = run([], payload=payload)
    assert out["status"] == "rejected" and reason in out["failure"]["reason"]
    assert slm.calls == [] and out["ledger"] == []


def test_when_every_tier_fails_a_human_edits_the_call():
    bad = tool_call("order_status", {"order_id": 7})
    out, graph, cfg, *_ = run([bad, bad], [bad, bad])
    review = graph.get_state(cfg).tasks[0].interrupts[0].value
    assert review["type"] == "human_review" and len(review["candidates"]) == 4
    # An edit that breaks the schema is refused and asked again; a valid one is returned.
    graph.invoke(Command(resume={"action": "edit", "value": {"name": "order_status", "args": {}}}), cfg)
    again = graph.get_state(cfg).tasks[0].interrupts[0].value
    assert "'order_id' is a required property" in again["error"]
    out = graph.invoke(Command(resume={"action": "edit", "value": {"name": "convert_currency", "args": {"amount": 250, "from_currency": "EUR", "to_currency": "USD"}}}), cfg)
    assert out["status"] == "done" and out["decided_by"] == {"0:call": "human"}
    assert out["final"]["calls"][0]["name"] == "convert_currency"


def test_the_graph_takes_functions_in_its_input_schema():
    assert WORKFLOW.takes_functions and not WORKFLOW.executes_tools
    schema = build(registry=registry([], [], script=queue)[0], resources={}).get_input_jsonschema()
    assert set(schema["properties"]) == {"request", "functions"}


# -- BFCL's function docs as the caller's functions --------------------------------------------


def test_bfcl_types_map_to_json_schema():
    doc = {"type": "dict", "properties": {"x": {"type": "float"}, "p": {"type": "tuple", "items": {"type": "integer"}},
                                          "o": {"type": "any"}, "d": {"type": "dict", "properties": {"k": {"type": "float"}}}}}
    assert bfcl_json_schema(doc) == {"type": "object", "properties": {"x": {"type": "number"}, "p": {"type": "array", "items": {"type": "integer"}},
                                                                      "o": {}, "d": {"type": "object", "properties": {"k": {"type": "number"}}}}}


@pytest.mark.parametrize("category", ["simple_python", "multiple", "irrelevance"])
def test_every_visible_bfcl_function_is_a_valid_client_function(category: str):
    dataset = load_bfcl(default_dataset_file(f"bfcl_{category}"))
    for case in dataset.cases:
        parse_functions([doc.openai_function() for doc in case.inputs.functions])


def test_gold_calls_pass_the_schema_and_mostly_the_grounding_check():
    """The verifier must not reject right answers: every simple_python gold call whose
    accepted values are plain validates against the converted schema, and the numeric
    grounding check rejects few of them (it cannot know that a deck has 52 cards)."""
    dataset = load_bfcl(default_dataset_file("bfcl_simple_python"))
    checked = ungrounded = 0
    for case in dataset.cases:
        functions = [f.model_dump() for f in parse_functions([doc.openai_function() for doc in case.inputs.functions])]
        want = case.expected.calls[0]
        # Nested dicts are written as accepted-value maps ({key: [options]}): not a plain value.
        args = {k: v[0] for k, v in want.accepted_arguments.items() if v and v[0] != "" and "{" not in repr(v[0])}
        name = want.name.replace(".", "_")
        problem = call_problem(functions, name, args)
        if problem is not None and "required property" not in problem:
            raise AssertionError(f"{case.id}: {problem}")
        request = "\n".join(m.content for m in case.inputs.messages)
        params = next(f for f in functions if f["name"] == name)["parameters"]
        checked += 1
        ungrounded += bool(ungrounded_numbers(args, params, request))
    assert checked == 400 and ungrounded / checked < 0.07, ungrounded


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    from tests.integration.studio_scripts import write_tiers_file

    tiers = write_tiers_file(tmp_path / "tiers.toml")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OLLAMA_HOST", "TIERFLOW_POLICY")}
    return env | {"TIERFLOW_TIERS": str(tiers), "TIERFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)}


def tierflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierflow.cli", *args], cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def test_cli_runs_the_graph_on_a_functions_file(cli_env):
    done = tierflow(cli_env, "run", "function_calling", "--input", "Where is my order?", "--functions", "@samples/functions.json")
    assert done.returncode == 0, done.stderr + done.stdout
    assert '"name": "get_order_status"' in done.stdout and "Ledger (this run)" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("function_calling", "--input", "hi"), "needs the functions it may call: --functions"),
        (("function_calling", "--input", "hi", "--functions", "[{"), "--functions is not valid JSON"),
        (("ticket_triage", "--input", "hi", "--functions", "[]"), "uses its own tools"),
    ],
)
def test_cli_explains_wrong_functions(cli_env, args: tuple[str, ...], message: str):
    done = tierflow(cli_env, "run", *args)
    assert done.returncode != 0 and message in done.stderr + done.stdout


def test_held_out_bfcl_shapes_load_and_grade(tmp_path: Path):
    """Other BFCL categories in the same format: Java types become strings (BFCL takes Java
    values as source text), odd names become tool-safe, and relevance needs any call."""
    from tierflow.evals.evaluators.function_calls import FunctionCallMatch

    fn = {"name": "ArrayUtils.sort/v2", "description": "sort", "parameters": {"type": "dict", "properties": {
        "arr": {"type": "Array", "description": "int[]"}, "n": {"type": "long"}}, "required": ["arr"]}}
    rows = [{"id": "live_relevance_0", "question": [[{"role": "user", "content": "sort [3,1]"}]], "function": [fn]}]
    path = tmp_path / "BFCL_v4_live_relevance.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    [case] = load_bfcl(path).cases  # no possible_answer file needed
    assert case.expected.any_call and case.expected.calls == []
    [tool] = parse_functions([case.inputs.functions[0].openai_function()])
    assert tool.name == "ArrayUtils_sort_v2"
    assert tool.parameters["properties"] == {"arr": {"type": "string", "description": "int[]"}, "n": {"type": "string"}}
    assert FunctionCallMatch().evaluate([{"name": "ArrayUtils_sort_v2", "arguments": {"arr": "new int[]{3,1}"}}], case).passed
    assert not FunctionCallMatch().evaluate([], case).passed


# -- soft checks: a second opinion, never a human review on their own ----------------------------

UNRELATED = tool_call("order_status", {"order_id": "250"})


def test_a_soft_check_sends_a_doubtful_call_up_and_the_top_tier_answer_stands():
    out, *_ = run([UNRELATED], [UNRELATED], escalation={"max_retries": 0})
    assert [(u["tier"], u["verdict"]) for u in out["ledger"]] == [("slm", "fail"), ("frontier", "pass")]
    assert "does not look related to the request" in out["ledger"][0]["reason"]
    [top] = [e for e in out["events"] if e["type"] == "verdict" and e["tier"] == "frontier"]
    assert top["verdict"] == "pass" and "the function serves the request" in top["warnings"][0]
    assert out["status"] == "done" and out["decided_by"] == {"0:call": "frontier"}


def test_under_all_slm_the_slm_is_the_top_so_soft_checks_only_warn():
    reg, _slm, top = registry([UNRELATED], [], script=queue)
    graph = build(registry=reg, resources={}, checkpointer=InMemorySaver())
    out = graph.invoke({"request": REQUEST, "functions": FUNCTIONS}, {"configurable": {"thread_id": "s"}}, context={"policy": "all-slm"})
    assert out["status"] == "done" and top.calls == []
    assert next(e for e in out["events"] if e["type"] == "verdict")["warnings"]


def test_on_a_tier_declared_soft_checks_false_a_soft_check_only_warns():
    reg, _slm, top = registry([UNRELATED], [GOOD], script=queue)
    reg.config = reg.config.model_copy(
        update={"tiers": [t.model_copy(update={"soft_checks": False}) if t.name == "slm" else t for t in reg.config.tiers]}
    )
    graph = build(registry=reg, resources={}, checkpointer=InMemorySaver())
    out = graph.invoke({"request": REQUEST, "functions": FUNCTIONS}, {"configurable": {"thread_id": "s"}})
    assert out["status"] == "done" and top.calls == [] and out["decided_by"] == {"0:call": "slm"}
    [verdict] = [e for e in out["events"] if e["type"] == "verdict"]
    assert verdict["verdict"] == "pass" and "does not look related to the request" in verdict["warnings"][0]


def test_a_decline_while_a_function_clearly_fits_is_escalated():
    payload = {"request": "Convert 250 euros into US dollars.", "functions": FUNCTIONS}
    out, *_ = run(["I cannot help with that."], [GOOD], payload=payload, escalation={"max_retries": 0})
    assert "'convert_currency' looks like it serves the request" in out["ledger"][0]["reason"]
    assert out["final"]["calls"][0]["name"] == "convert_currency"


def test_relevance_ranks_the_function_that_serves_the_request():
    from tierflow.graphs.function_calling import DECLINE_SIMILARITY, SERVES_SIMILARITY, relevance

    functions = [f.model_dump() for f in parse_functions(FUNCTIONS)]
    scores = relevance(REQUEST, functions)
    assert scores["convert_currency"] >= SERVES_SIMILARITY > scores["order_status"]
    assert relevance("Convert 250 euros into US dollars.", functions)["convert_currency"] >= DECLINE_SIMILARITY
    assert max(relevance("Book me a flight to Oslo", functions).values()) < SERVES_SIMILARITY


def test_a_soft_failure_goes_straight_up_while_a_hard_one_is_retried_first():
    out, *_ = run([UNRELATED], [GOOD])  # max_retries = 1 (the default)
    assert [(u["tier"], u["verdict"]) for u in out["ledger"]] == [("slm", "fail"), ("frontier", "pass")]
    assert [e["type"] for e in out["events"] if e["type"] in ("retry", "escalate")] == ["escalate"]
    bad = tool_call("convert_currency", {"amount": "250", "from_currency": "EUR", "to_currency": "USD"})
    out, *_ = run([bad, GOOD])  # a schema failure: the same tier retries with the reason
    assert [(u["tier"], u["verdict"]) for u in out["ledger"]] == [("slm", "fail"), ("slm", "pass")]
