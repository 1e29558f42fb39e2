"""The SQLite helpdesk on real database files: idempotent filing (also from threads and
processes), verbatim storage of SQL metacharacters, validation and the LangChain tools."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from tierflow.model_tiers.errors import TierflowError
from tierflow.tools.helpdesk import (
    TICKET_STATUSES,
    FiledTicket,
    Helpdesk,
    HelpdeskError,
    InvalidTicket,
    Ticket,
    TicketNotFound,
    default_helpdesk_path,
    file_ticket_tool,
    get_ticket_tool,
    helpdesk_tools,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXED_NOW = datetime(2026, 11, 28, 12, 30, tzinfo=UTC)


@pytest.fixture()
def helpdesk(tmp_path: Path) -> Helpdesk:
    return Helpdesk(tmp_path / "helpdesk.sqlite", clock=lambda: FIXED_NOW)


def _ticket(key: str = "thread-1:file_ticket", **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "idempotency_key": key,
        "thread_id": "thread-1",
        "message": "I lost my card yesterday",
        "intent": "lost_or_stolen_card",
        "decided_by": "slm",
        "entities": {"when": "yesterday"},
        "draft_reply": "Freeze the card in the app.",
        "cited_snippet_ids": ["card-lost-stolen#1"],
        "status": "drafted",
    }
    fields.update(overrides)
    return fields


def _row_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0])


# ----------------------------------------------------------------------------- filing


def test_filed_ticket_reads_back_field_for_field(helpdesk: Helpdesk) -> None:
    filed = helpdesk.file_ticket(**_ticket())
    assert filed == FiledTicket(ticket_id=1, created=True)
    ticket = helpdesk.get_ticket(filed.ticket_id)
    assert ticket == Ticket(id=1, created_at=FIXED_NOW, **{**_ticket(), "cited_snippet_ids": ("card-lost-stolen#1",)})
    assert helpdesk.get_ticket_by_key("thread-1:file_ticket") == ticket


def test_same_key_twice_writes_one_row_and_returns_the_first_ticket(helpdesk: Helpdesk) -> None:
    first = helpdesk.file_ticket(**_ticket())
    again = helpdesk.file_ticket(**_ticket(message="a different retry text", intent="card_arrival"))
    assert first == FiledTicket(ticket_id=1, created=True)
    assert again == FiledTicket(ticket_id=1, created=False)
    assert _row_count(helpdesk.path) == 1
    stored = helpdesk.get_ticket(1)
    assert stored is not None
    assert (stored.message, stored.intent) == ("I lost my card yesterday", "lost_or_stolen_card")
    # A replayed key does not use up an id: the next new key gets the next number.
    assert helpdesk.file_ticket(**_ticket("thread-1:other_step")).ticket_id == 2


def test_same_key_from_many_threads_writes_one_row(helpdesk: Helpdesk) -> None:
    barrier = threading.Barrier(8)
    results: list[FiledTicket] = []
    lock = threading.Lock()

    def file(index: int) -> None:
        barrier.wait()
        filed = helpdesk.file_ticket(**_ticket("thread-9:file_ticket", message=f"attempt {index}"))
        with lock:
            results.append(filed)

    threads = [threading.Thread(target=file, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert {r.ticket_id for r in results} == {1}
    assert sum(r.created for r in results) == 1
    assert _row_count(helpdesk.path) == 1


def test_same_key_from_several_processes_writes_one_row(tmp_path: Path) -> None:
    # A fresh file: the processes also race to create the schema.
    path = tmp_path / "shared.sqlite"
    start_flag = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from tierflow.tools.helpdesk import Helpdesk
        while not Path({str(start_flag)!r}).exists():
            time.sleep(0.01)
        desk = Helpdesk({str(path)!r})
        shared = desk.file_ticket(idempotency_key="thread-7:file_ticket", thread_id="thread-7",
                                  message="from process " + sys.argv[1], intent="card_arrival",
                                  decided_by="slm")
        own = desk.file_ticket(idempotency_key="proc-" + sys.argv[1], thread_id="thread-7",
                               message="own", intent="card_arrival", decided_by="slm")
        print(json.dumps([shared.model_dump(), own.model_dump()]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], cwd=REPO_ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    start_flag.touch()
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    shared = [r[0] for r in results]
    assert len({r["ticket_id"] for r in shared}) == 1
    assert sum(r["created"] for r in shared) == 1
    assert all(r[1]["created"] for r in results)
    assert _row_count(path) == 5
    assert len(Helpdesk(path).list_tickets(thread_id="thread-7")) == 5


def test_sql_metacharacters_are_stored_verbatim(helpdesk: Helpdesk) -> None:
    nasty = "Robert'); DROP TABLE tickets;-- \" % _ \\ ; /* */ ? ?1 :name @x $y \x00 é 🃏\r\n"
    filed = helpdesk.file_ticket(**_ticket(
        key=nasty, thread_id="' OR '1'='1", message=nasty, intent=nasty, decided_by=nasty,
        entities={nasty: nasty, "nested": [nasty, {"k": nasty}]}, draft_reply=nasty,
        cited_snippet_ids=[nasty],
    ))
    helpdesk.file_ticket(**_ticket("innocent-key", thread_id="thread-1"))
    ticket = helpdesk.get_ticket(filed.ticket_id)
    assert ticket is not None
    assert (ticket.idempotency_key, ticket.message, ticket.intent, ticket.decided_by, ticket.draft_reply) == (
        nasty, nasty, nasty, nasty, nasty,
    )
    assert ticket.entities == {nasty: nasty, "nested": [nasty, {"k": nasty}]}
    assert ticket.cited_snippet_ids == (nasty,)
    assert [t.id for t in helpdesk.list_tickets(thread_id="' OR '1'='1")] == [filed.ticket_id]
    assert [t.id for t in helpdesk.list_tickets(thread_id="%")] == []
    assert helpdesk.file_ticket(**_ticket(key=nasty)).created is False
    assert _row_count(helpdesk.path) == 2


@pytest.mark.parametrize("status", TICKET_STATUSES)
def test_every_declared_status_is_accepted_by_the_table(helpdesk: Helpdesk, status: str) -> None:
    filed = helpdesk.file_ticket(**_ticket(status=status))
    ticket = helpdesk.get_ticket(filed.ticket_id)
    assert ticket is not None and ticket.status == status


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"key": ""}, "idempotency_key"),
        ({"key": "k" * 257}, "idempotency_key"),
        ({"message": ""}, "message"),
        ({"intent": ""}, "intent"),
        ({"decided_by": ""}, "decided_by"),
        ({"status": "closed"}, "status"),
        ({"entities": {"when": object()}}, "JSON-serialisable"),
        ({"entities": {"amount": float("nan")}}, "JSON-serialisable"),
        ({"entities": ["not", "a", "mapping"]}, "entities"),
        ({"cited_snippet_ids": "card-pin#1"}, "cited_snippet_ids"),
    ],
)
def test_invalid_tickets_are_refused_before_anything_is_written(
    helpdesk: Helpdesk, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidTicket, match=message) as caught:
        helpdesk.file_ticket(**_ticket(**overrides))
    assert isinstance(caught.value, TierflowError)
    assert helpdesk.list_tickets() == []


def test_listing_filters_orders_and_limits(helpdesk: Helpdesk) -> None:
    helpdesk.file_ticket(**_ticket("a:1", thread_id="a", status="open"))
    helpdesk.file_ticket(**_ticket("b:1", thread_id="b", status="needs_human"))
    helpdesk.file_ticket(**_ticket("a:2", thread_id="a", status="needs_human"))
    assert [t.idempotency_key for t in helpdesk.list_tickets()] == ["a:1", "b:1", "a:2"]
    assert [t.idempotency_key for t in helpdesk.list_tickets(thread_id="a")] == ["a:1", "a:2"]
    assert [t.idempotency_key for t in helpdesk.list_tickets(status="needs_human")] == ["b:1", "a:2"]
    assert [t.idempotency_key for t in helpdesk.list_tickets(thread_id="a", status="open")] == ["a:1"]
    assert [t.idempotency_key for t in helpdesk.list_tickets(limit=2)] == ["a:1", "b:1"]
    with pytest.raises(InvalidTicket, match="limit"):
        helpdesk.list_tickets(limit=0)
    with pytest.raises(InvalidTicket, match="unknown ticket status"):
        helpdesk.list_tickets(status="closed")  # type: ignore[arg-type]  # a status the API rejects, on purpose


def test_unknown_ticket_is_none(helpdesk: Helpdesk) -> None:
    assert helpdesk.get_ticket(42) is None
    assert helpdesk.get_ticket_by_key("never-filed") is None


# ----------------------------------------------------------------------------- storage


def test_tickets_persist_for_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "desk.sqlite"
    Helpdesk(path).file_ticket(**_ticket())
    tickets = Helpdesk(path).list_tickets()
    assert [t.message for t in tickets] == ["I lost my card yesterday"]
    assert tickets[0].created_at.tzinfo is not None


def test_construction_creates_no_file_and_default_path_follows_tierflow_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = Helpdesk(tmp_path / "sub" / "desk.sqlite")
    assert not (tmp_path / "sub").exists()
    desk.list_tickets()
    assert (tmp_path / "sub" / "desk.sqlite").is_file()
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path / "home"))
    assert Helpdesk().path == default_helpdesk_path() == tmp_path / "home" / "helpdesk.sqlite"
    monkeypatch.delenv("TIERFLOW_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_helpdesk_path() == tmp_path / ".tierflow" / "helpdesk.sqlite"


def test_database_from_a_newer_tierflow_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(HelpdeskError, match="schema version 99"):
        Helpdesk(path).list_tickets()


# ----------------------------------------------------------------------------- LangChain tools


def test_file_ticket_tool_hides_injected_arguments_and_is_idempotent(helpdesk: Helpdesk) -> None:
    tool = file_ticket_tool(helpdesk)
    assert tool.name == "file_ticket"
    visible = set(tool.tool_call_schema.model_json_schema()["properties"])
    assert visible == {"message", "intent", "draft_reply", "entities", "cited_snippet_ids", "status"}
    call = {
        "type": "tool_call", "id": "call-1", "name": "file_ticket",
        "args": {
            "message": "My card has not arrived", "intent": "card_arrival",
            "draft_reply": "Cards arrive in 3 to 5 working days.",
            "cited_snippet_ids": ["card-delivery#1"],
            # injected by the graph, not chosen by the model:
            "idempotency_key": "thread-3:file_ticket", "thread_id": "thread-3", "decided_by": "frontier",
        },
    }
    first = tool.invoke(call)
    again = tool.invoke({**call, "id": "call-2"})
    assert isinstance(first, ToolMessage)
    assert json.loads(first.content) == {"ticket_id": 1, "created": True}
    assert json.loads(again.content) == {"ticket_id": 1, "created": False}
    [ticket] = helpdesk.list_tickets()
    assert (ticket.status, ticket.decided_by, ticket.cited_snippet_ids) == ("drafted", "frontier", ("card-delivery#1",))


def test_get_ticket_tool_reads_and_reports_missing_tickets(helpdesk: Helpdesk) -> None:
    helpdesk.file_ticket(**_ticket())
    tool = get_ticket_tool(helpdesk)
    assert tool.invoke({"ticket_id": 1})["message"] == "I lost my card yesterday"
    with pytest.raises(TicketNotFound, match="no ticket has id 7"):
        tool.invoke({"ticket_id": 7})
    assert [t.name for t in helpdesk_tools(helpdesk)] == ["file_ticket", "get_ticket"]
