"""Scale-out path: graphs checkpoint into a real PostgreSQL (PostgresSaver), so a run
survives the death of the process that ran it and continues in another one.

The server comes from `.ci/postgres.sh`; the tiers are the scripted tiers of
studio_scripts.py, loaded from a tiers file as in a real deployment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.types import Command

from tests.integration.pg import require_postgres
from tests.integration.studio_scripts import (
    DECLINED,
    INVENTED_AMOUNT,
    INVENTS_AMOUNT,
    TRUE_ENTITIES,
    write_tiers_file,
)
from tierflow.graphs import ticket_triage
from tierflow.tools.helpdesk import Helpdesk, default_helpdesk_path

REPO_ROOT = Path(__file__).resolve().parents[2]
# A guard against a hung worker, not a timing assertion: the worker needs a few seconds.
WORKER_DEADLINE_S = 180.0
MODEL_STEPS = ["0:classify", "1:extract", "3:draft"]


@pytest.fixture(scope="module")
def postgres_dsn() -> str:
    return require_postgres()


@pytest.fixture
def tiers_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_tiers_file(tmp_path / "tiers.toml")
    monkeypatch.setenv("TIERFLOW_TIERS", str(path))
    return path


def _start_worker(dsn: str, thread: str, filed: Path, log_path: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "tests.integration.pg_crash_worker",
        "--dsn", dsn, "--thread", thread, "--request", DECLINED, "--filed", str(filed),
    ]
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _wait_for_filing(worker: subprocess.Popen[bytes], filed: Path, log_path: Path) -> dict:
    deadline = time.monotonic() + WORKER_DEADLINE_S
    while not filed.exists():
        code = worker.poll()
        if code is not None or time.monotonic() > deadline:
            worker.kill()
            log = log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
            pytest.fail(f"the worker {'exited with ' + str(code) if code is not None else 'hung'} before filing; log:\n{log}")
        time.sleep(0.1)
    return json.loads(filed.read_text(encoding="utf-8"))


def test_a_killed_run_resumes_from_postgres_without_filing_twice(postgres_dsn: str, tiers_file: Path, tmp_path: Path) -> None:
    thread = f"pg-resume-{uuid.uuid4().hex}"
    config = {"configurable": {"thread_id": thread}}
    filed_marker = tmp_path / "filed.json"
    log_path = tmp_path / "worker.log"

    worker = _start_worker(postgres_dsn, thread, filed_marker, log_path)
    try:
        first_filing = _wait_for_filing(worker, filed_marker, log_path)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert first_filing["created"] is True
    assert worker.returncode == -signal.SIGKILL

    helpdesk = Helpdesk(default_helpdesk_path())
    with PostgresSaver.from_conn_string(postgres_dsn) as saver:
        graph = ticket_triage.build(checkpointer=saver)
        before = graph.get_state(config)
        # Postgres holds the run up to the step that was cut off.
        assert before.next == ("file",)
        run_id = before.values["run_id"]
        assert [u["step"] for u in before.values["ledger"]] == MODEL_STEPS
        assert [t.id for t in helpdesk.list_tickets(thread_id=run_id)] == [first_filing["ticket_id"]]

        out = graph.invoke(None, config)

        assert out["status"] == "done"
        # The step ran again, found its ticket by its idempotency key, and wrote nothing.
        assert out["results"]["4:file"] == {"ticket_id": first_filing["ticket_id"], "created": False}
        assert [t.id for t in helpdesk.list_tickets(thread_id=run_id)] == [first_filing["ticket_id"]]
        # No model step ran twice: one ledger record each, from before the crash.
        assert [u["step"] for u in out["ledger"]] == MODEL_STEPS
        assert out["final"]["ticket_id"] == first_filing["ticket_id"]
        assert not graph.get_state(config).next


def test_a_human_review_waits_in_postgres_and_resumes_in_another_connection(postgres_dsn: str, tiers_file: Path) -> None:
    thread = f"pg-review-{uuid.uuid4().hex}"
    config = {"configurable": {"thread_id": thread}}
    context = {"max_retries": 0}

    with PostgresSaver.from_conn_string(postgres_dsn) as saver:
        paused = ticket_triage.build(checkpointer=saver).invoke({"request": INVENTS_AMOUNT}, config, context=context)
    [pending] = paused["__interrupt__"]
    assert pending.value["step"] == "extract"
    assert {c["amount"] for c in pending.value["candidates"]} == {INVENTED_AMOUNT}

    # A new connection (another replica, after a restart) sees the same pending question.
    with PostgresSaver.from_conn_string(postgres_dsn) as saver:
        graph = ticket_triage.build(checkpointer=saver)
        state = graph.get_state(config)
        assert state.next == ("human_review",)
        assert state.interrupts[0].value["reasons"] == pending.value["reasons"]
        out = graph.invoke(Command(resume={"action": "edit", "value": TRUE_ENTITIES}), config, context=context)

    assert out["status"] == "done"
    assert out["decided_by"]["1:extract"] == "human"
    assert {k: v for k, v in out["results"]["1:extract"].items() if v is not None} == TRUE_ENTITIES
