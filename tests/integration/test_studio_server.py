"""LangGraph Studio's view of tierflow, through the real server and the real SDK.

`tierflow studio` (which runs `langgraph dev --no-browser --no-reload` as its child) runs as a
subprocess on a free loopback port; its log, its threads (`.langgraph_api/`) and the
graphs' business data live in a tmp dir outside the repository. Its tiers are the
scripted tiers of studio_scripts.py, read from the tiers file named by TIERFLOW_TIERS.
Everything is driven with `langgraph-sdk`, as Studio drives it.

Tests that cover "every graph" iterate over `graphs.catalog.GRAPH_MODULES`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from tests.integration.studio_scripts import (
    DECLINED,
    DECLINED_LABEL,
    INVENTED_AMOUNT,
    INVENTS_AMOUNT,
    SCRIPTED_GRAPHS,
    TIERS,
    TRUE_ENTITIES,
    write_tiers_file,
)
from tests.servers.process import ServerProcess, free_port, running_server
from tierflow.graphs.catalog import graph_names, load_graph_module
from tierflow.model_tiers import TierRunContext

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_FUNCTIONS = REPO_ROOT / "samples" / "functions.json"
SERVER_START_DEADLINE_S = 180.0
# For graphs without scripted answers: any request; their runs must end, not pass.
GENERIC_REQUEST = "Hello, I need help with order 1234: it has not arrived and I was charged 20 USD."
# Declines every kind of pause (human review, tool confirmation, budget) so a run ends.
DECLINE = {"action": "reject", "approve": False}
TERMINAL = {"done", "failed", "stopped", "rejected"}
ENGINE_NODES = {"router", "human_review"}
MODEL_STEPS = ["0:classify", "1:extract", "3:draft"]


@dataclass
class Studio:
    server: ServerProcess
    client: SyncLangGraphClient
    graphs: dict[str, Any]  # langgraph.json's "graphs"

    def assistant_id(self, graph_id: str) -> str:
        [assistant] = self.client.assistants.search(graph_id=graph_id, metadata={"created_by": "system"}, limit=100)
        return str(assistant["assistant_id"])

    def new_thread(self) -> str:
        return str(self.client.threads.create()["thread_id"])


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    work = tmp_path_factory.mktemp("studio")
    tiers = write_tiers_file(work / "tiers.toml")
    env = {k: v for k, v in os.environ.items() if k not in ("TIERFLOW_POLICY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST")}
    # The server runs in tmp (--workdir): the datasets folder is named, not found from there.
    env |= {"TIERFLOW_TIERS": str(tiers), "TIERFLOW_HOME": str(work / "home"), "TIERFLOW_DATASETS": str(REPO_ROOT.parent / "shared" / "datasets")}
    port = free_port()
    # --workdir: the server's threads go to tmp, not to the developer's .langgraph_api.
    argv = ["python", "-m", "tierflow.cli", "studio", "--port", str(port), "--workdir", str(work / "server")]
    (work / "server").mkdir()
    with running_server(
        "tierflow studio", argv, port=port, log_path=work / "studio.log", ready_path="/ok",
        deadline_s=SERVER_START_DEADLINE_S, cwd=REPO_ROOT, env=env,
    ) as server:
        client = get_sync_client(url=server.url, api_key=None, timeout=120.0)
        graphs = json.loads((REPO_ROOT / "langgraph.json").read_text(encoding="utf-8"))["graphs"]
        yield Studio(server, client, graphs)


def _input(graph_id: str, request: str) -> dict[str, Any]:
    """A run's input: the request, plus the sample functions for graphs that take the caller's."""
    if load_graph_module(graph_id).WORKFLOW.takes_functions:
        return {"request": request, "functions": json.loads(SAMPLE_FUNCTIONS.read_text(encoding="utf-8"))}
    return {"request": request}


def _finish(studio: Studio, thread: str, graph_id: str, context: dict[str, Any]) -> dict[str, Any]:
    """Decline every pause until the run ends; return the thread's final state."""
    for _ in range(20):
        state = studio.client.threads.get_state(thread)
        if not state["next"]:
            return state
        studio.client.runs.wait(thread, graph_id, command={"resume": DECLINE}, context=context)
    raise AssertionError(f"{graph_id}: the run kept pausing; last state: {json.dumps(state, default=str)[:2000]}")


def _stream(studio: Studio, thread: str, graph_id: str, **kw: Any) -> list[tuple[str, Any]]:
    return [(p.event, p.data) for p in studio.client.runs.stream(thread, graph_id, stream_mode=["updates", "custom"], **kw)]


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_tierflow_studio_is_langgraph_dev_offline_with_the_url_and_live_tiers(studio: Studio) -> None:
    pid = studio.server.process.pid
    assert _cmdline(pid)[1:4] == ["-m", "tierflow.cli", "studio"]  # the command stays, behind its guard
    (child,) = (int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    argv = _cmdline(child)
    assert argv[1:4] == ["-m", "langgraph_cli", "dev"]
    assert {"--no-browser", "--no-reload"} <= set(argv)
    assert argv[argv.index("--port") + 1] == str(studio.server.port)
    log = studio.server.log_path.read_text(encoding="utf-8", errors="replace")
    assert f"studio/?baseUrl=http://127.0.0.1:{studio.server.port}" in log
    for tier in TIERS:
        assert any(tier in line and "scripted" in line and "yes" in line for line in log.splitlines()), log


def test_the_assistants_are_exactly_the_graphs_of_langgraph_json(studio: Studio) -> None:
    assistants = studio.client.assistants.search(metadata={"created_by": "system"}, limit=100)
    assert sorted(a["graph_id"] for a in assistants) == sorted(studio.graphs) == graph_names()


@pytest.mark.parametrize("graph_id", graph_names())
def test_each_graph_draws_the_real_state_machine(studio: Studio, graph_id: str) -> None:
    workflow = load_graph_module(graph_id).WORKFLOW
    steps = [s.name for s in workflow.all_steps]
    has_tools = workflow.executes_tools  # client-tool steps return their call: no act node

    drawing = studio.client.assistants.get_graph(studio.assistant_id(graph_id))
    nodes = {n["id"] for n in drawing["nodes"]}
    edges = {(e["source"], e["target"]) for e in drawing["edges"]}

    assert nodes == {"__start__", "__end__", *ENGINE_NODES, *steps, *(["act"] if has_tools else [])}
    # Each step node judges its own attempt, then goes to the next step, back to itself (a
    # retry or an escalation), to act, to human review or to the responder.
    # The node that ends a run writes its final output: there is no responder node.
    expected = {("__start__", "router"), ("router", "__end__")}
    expected |= {("router", s) for s in steps}
    expected |= {(a, b) for a in steps for b in steps}
    expected |= {(s, "human_review") for s in steps} | {(s, "__end__") for s in steps} | {("human_review", s) for s in steps}
    if has_tools:
        expected |= {(s, "act") for s in steps} | {("act", "human_review")} | {("act", s) for s in steps}
    assert expected <= edges, sorted(expected - edges)


@pytest.mark.parametrize("graph_id", graph_names())
def test_each_graph_publishes_its_schemas_with_the_run_context(studio: Studio, graph_id: str) -> None:
    schemas = studio.client.assistants.get_schemas(studio.assistant_id(graph_id))
    assert schemas["input_schema"] is not None, "input schema missing (see the server log for why)"
    takes_functions = load_graph_module(graph_id).WORKFLOW.takes_functions
    assert set(schemas["input_schema"]["properties"]) == {"request", *(["functions"] if takes_functions else [])}
    assert schemas["output_schema"] is not None, "output schema missing (see the server log for why)"
    outputs = {"status", "final", "results", "decided_by", "ledger", "events", "failure"}
    assert outputs <= set(schemas["output_schema"]["properties"])
    assert outputs <= set(schemas["state_schema"]["properties"])
    assert set(schemas["context_schema"]["properties"]) == {f.name for f in fields(TierRunContext)}


@pytest.mark.parametrize("graph_id", graph_names())
def test_each_graph_runs_to_completion_on_scripted_tiers(studio: Studio, graph_id: str) -> None:
    scripted = graph_id in SCRIPTED_GRAPHS
    # Unscripted graphs may fail their checks: the "fail" policy ends such a run in state.
    context: dict[str, Any] = {} if scripted else {"on_top_failure": "fail", "max_retries": 0}
    thread = studio.new_thread()
    studio.client.runs.wait(thread, graph_id, input=_input(graph_id, DECLINED if scripted else GENERIC_REQUEST), context=context)
    values = _finish(studio, thread, graph_id, context)["values"]

    assert values["status"] in TERMINAL and values["final"]["status"] == values["status"]
    assert values["ledger"], "no model call was recorded in the thread's state"
    assert {u["tier"] for u in values["ledger"]} <= set(TIERS)
    assert all(u["run_id"] == values["run_id"] and u["verdict"] in ("pass", "fail", "fault") for u in values["ledger"])
    if scripted:
        assert values["status"] == "done", values.get("failure")


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({}, {"0:classify": "slm", "1:extract": "slm", "3:draft": "frontier"}),
        ({"policy": "all-frontier"}, dict.fromkeys(MODEL_STEPS, "frontier")),
        ({"policy": "all-slm"}, dict.fromkeys(MODEL_STEPS, "slm")),
        ({"role_tiers": {"classify": "frontier", "respond": "slm"}}, {"0:classify": "frontier", "1:extract": "slm", "3:draft": "slm"}),
    ],
)
def test_the_run_context_chooses_the_tiers_per_run(studio: Studio, context: dict[str, Any], expected: dict[str, str]) -> None:
    out = studio.client.runs.wait(studio.new_thread(), "ticket_triage", input={"request": DECLINED}, context=context)
    assert out["status"] == "done" and out["final"]["intent"] == DECLINED_LABEL
    assert {k: v for k, v in out["decided_by"].items() if k in expected} == expected
    assert {u["step"]: u["tier"] for u in out["ledger"]} == expected


def test_an_assistant_carries_its_own_context(studio: Studio) -> None:
    assistant = studio.client.assistants.create("ticket_triage", context={"policy": "all-frontier"}, name="triage, frontier only")
    assert studio.client.assistants.get(assistant["assistant_id"])["context"] == {"policy": "all-frontier"}
    out = studio.client.runs.wait(studio.new_thread(), assistant["assistant_id"], input={"request": DECLINED})
    assert out["status"] == "done"
    assert {u["tier"] for u in out["ledger"]} == {"frontier"}


def test_a_stream_shows_each_step_and_its_tier_while_the_run_goes(studio: Studio) -> None:
    thread = studio.new_thread()
    parts = _stream(studio, thread, "ticket_triage", input={"request": DECLINED})
    custom = [(i, d) for i, (event, d) in enumerate(parts) if event == "custom"]
    updates = [(i, d) for i, (event, d) in enumerate(parts) if event == "updates"]

    calls = [(d["step"], d["tier"]) for _, d in custom if d["type"] == "model_call"]
    assert calls == [("classify", "slm"), ("extract", "slm"), ("draft", "frontier")]
    verdicts = [(d["step"], d["verdict"]) for _, d in custom if d["type"] == "verdict"]
    assert verdicts == [(s, "pass") for s in ("classify", "extract", "retrieve", "draft", "file")]
    # The ledger records arrive with each step's update, one per model call.
    streamed_ledger = [u for _, d in updates for node_update in d.values() if isinstance(node_update, dict) for u in node_update.get("ledger", [])]
    assert [(u["step"], u["tier"], u["verdict"]) for u in streamed_ledger] == [
        ("0:classify", "slm", "pass"), ("1:extract", "slm", "pass"), ("3:draft", "frontier", "pass"),
    ]
    # Streamed as they happen: the first tier event comes before the last node's update.
    last_update_at = updates[-1][0]
    assert custom[0][0] < last_update_at
    assert next(iter(updates[0][1])) == "router"

    state = studio.client.threads.get_state(thread)["values"]
    assert state["ledger"] == streamed_ledger
    # Every event the run recorded reached the stream, in order (model_call and final are stream-only).
    assert state["events"] == [d for _, d in custom if d["type"] not in ("model_call", "proposal", "final")]


def test_escalation_ends_in_a_human_review_that_a_command_resumes(studio: Studio) -> None:
    thread = studio.new_thread()
    context = {"max_retries": 0}
    parts = _stream(studio, thread, "ticket_triage", input={"request": INVENTS_AMOUNT}, context=context)

    events = [d for event, d in parts if event == "custom"]
    ladder = [(e["type"], e.get("from"), e.get("to")) for e in events if e["type"] in ("retry", "escalate", "top")]
    assert ladder == [("escalate", "slm", "frontier"), ("top", "frontier", None)]
    paused = [d["__interrupt__"] for event, d in parts if event == "updates" and "__interrupt__" in d]
    assert len(paused) == 1

    state = studio.client.threads.get_state(thread)
    assert state["next"] == ["human_review"]
    [question] = state["interrupts"]
    assert question["value"]["type"] == "human_review" and question["value"]["step"] == "extract"
    assert [c["amount"] for c in question["value"]["candidates"]] == [INVENTED_AMOUNT, INVENTED_AMOUNT]
    assert all("does not occur" in r for r in question["value"]["reasons"])
    failed = [(u["step"], u["tier"], u["verdict"]) for u in state["values"]["ledger"] if u["verdict"] == "fail"]
    assert failed == [("1:extract", "slm", "fail"), ("1:extract", "frontier", "fail")]
    assert [e["type"] for e in state["values"]["events"] if e["type"] in ("escalate", "top")] == ["escalate", "top"]

    out = studio.client.runs.wait(thread, "ticket_triage", command={"resume": {"action": "edit", "value": TRUE_ENTITIES}}, context=context)

    assert out["status"] == "done"
    assert out["decided_by"]["1:extract"] == "human"
    assert out["final"]["entities"] == TRUE_ENTITIES and out["final"]["intent"] == "transaction_charged_twice"

    history = studio.client.threads.get_history(thread, limit=200)  # newest first
    assert history[0]["next"] == [] and history[0]["values"]["status"] == "done"
    assert history[-1]["next"] == ["__start__"]
    at_review = [h for h in history if h["next"] == ["human_review"]]
    assert at_review and at_review[-1]["tasks"][0]["interrupts"][0]["value"]["step"] == "extract"
    ledger_sizes = [len(h["values"].get("ledger", [])) for h in reversed(history)]
    assert ledger_sizes == sorted(ledger_sizes)  # the ledger only grows
    assert ledger_sizes[-1] == len(out["ledger"])



def test_a_bad_context_value_gets_tierflows_message_through_the_server(studio: Studio) -> None:
    """An unknown context *field* never reaches the graph on the server: langgraph_api drops
    keys its context schema does not list (with a debug log line). A bad *value* does, and
    the caller gets tierflow's message, which names the field and the allowed values."""
    thread = studio.new_thread()
    try:
        out = studio.client.runs.wait(thread, "ticket_triage", input={"request": DECLINED}, context={"policy": "cheapest"})
        text = json.dumps(out, default=str)
    except Exception as err:  # the SDK raises the run's error; its text is what a caller sees
        text = str(err)
    assert "run context" in text and "policy" in text and "all-frontier" in text, text
    dropped = studio.client.runs.wait(studio.new_thread(), "ticket_triage", input={"request": DECLINED}, context={"bogus_field": 1})
    assert dropped["status"] == "done"
