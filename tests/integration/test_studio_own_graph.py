"""`tierflow studio path/to/file.py:WORKFLOW`: a user's graph, declared in one file and
registered nowhere, served by the real LangGraph server next to the shipped graphs, and
run through the SDK as Studio runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client

from tests.conftest import REPO_ROOT
from tests.servers.process import free_port, running_server
from tests.unit.own_graph_scripts import TIERS_TOML

SERVER_START_DEADLINE_S = 180.0


@pytest.mark.timeout(400)
def test_a_users_file_graph_is_served_and_runs(tmp_path: Path) -> None:
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(TIERS_TOML)
    env = {k: v for k, v in os.environ.items() if k not in ("TIERFLOW_POLICY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST")}
    env |= {"TIERFLOW_TIERS": str(tiers), "TIERFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)}
    port = free_port()
    (tmp_path / "server").mkdir()
    argv = ["python", "-m", "tierflow.cli", "studio", "graphs/examples/refund_desk.py:WORKFLOW",
            "--port", str(port), "--workdir", str(tmp_path / "server")]
    with running_server(
        "tierflow studio (own graph)", argv, port=port, log_path=tmp_path / "studio.log", ready_path="/ok",
        deadline_s=SERVER_START_DEADLINE_S, cwd=REPO_ROOT, env=env,
    ) as server:
        client = get_sync_client(url=server.url, api_key=None, timeout=120.0)
        graph_ids = {a["graph_id"] for a in client.assistants.search(metadata={"created_by": "system"}, limit=100)}
        assert {"refund_desk", "ticket_triage"} <= graph_ids
        drawn = client.assistants.get_graph(client.assistants.search(graph_id="refund_desk", limit=1)[0]["assistant_id"])
        assert {"classify", "extract", "reply", "human_review"} <= {n["id"] for n in drawn["nodes"]}
        thread = client.threads.create()["thread_id"]
        out = client.runs.wait(thread, "refund_desk", input={"request": "Please refund order 4417, I paid 23.90 EUR."})
        assert out["status"] == "done", out
        assert out["final"]["order_id"] == "4417" and out["final"]["intent"] == "refund_request"
