"""The ledger store: rows that are never lost nor doubled, under concurrent processes, kills
and resumes; clear errors for stores it cannot use; and the graph engine writing to it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver

import tierflow
from tests.conftest import REPO_ROOT
from tests.kill import kill_at_marker
from tests.unit.ledger_store_worker import compiled, row
from tests.unit.own_graph_scripts import TIERS_TOML, reply
from tierflow.graphs.examples.refund_desk import WORKFLOW
from tierflow.model_tiers.ledger_store import (
    LEDGER_ENV_VAR,
    LedgerStoreError,
    Settlement,
    default_ledger_store,
    forget_default_stores,
    open_ledger_store,
)
from tierflow.model_tiers.ledger_store import store as store_module
from tierflow.model_tiers.ledger_store.sqlite import SqliteLedgerStore


@pytest.fixture()
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "ledger.sqlite"
    monkeypatch.setenv(LEDGER_ENV_VAR, str(path))
    forget_default_stores()
    yield path
    forget_default_stores()


# -- the store itself --------------------------------------------------------------------------


def test_a_second_row_of_the_same_request_key_is_a_rerun(tmp_path: Path) -> None:
    store = SqliteLedgerStore(tmp_path / "l.sqlite")
    first = store.append(row("w", 0, run_id="r"))
    again = store.append(row("w", 0, run_id="r"))
    other = store.append(row("w", 0, run_id="r", seq=2))
    assert (first.execution, again.execution, other.execution) == (1, 2, 1)
    assert not first.rerun and again.rerun
    assert [r.execution for r in store.rows()] == [1, 2, 1]


def test_settle_and_outcome_land_on_the_rows_they_name(tmp_path: Path) -> None:
    store = SqliteLedgerStore(tmp_path / "l.sqlite")
    a = store.append(row("w", 0, run_id="r", attempt=1))
    b = store.append(row("w", 0, run_id="r", attempt=2))
    store.settle([a.request_id], Settlement(verdict="fail", reason="too low", signals={"p_right": 0.2}, escalation="escalate"))
    store.settle([b.request_id], Settlement(verdict="pass", reason=None, signals=None, escalation=None))
    store.finish_item("r", "0:step", "verified")
    got = {r.attempt: r for r in store.rows()}
    assert (got[1].verdict, got[1].p_right, got[1].escalation, got[1].outcome) == ("fail", 0.2, "escalate", "verified")
    assert (got[2].verdict, got[2].p_right, got[2].outcome) == ("pass", None, "verified")


def test_concurrent_processes_lose_no_row(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    SqliteLedgerStore(path).close()
    workers = [
        subprocess.Popen([sys.executable, "-m", "tests.unit.ledger_store_worker", "append", str(path), f"w{i}", "150"], cwd=REPO_ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for w in workers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err.decode()
    assert SqliteLedgerStore(path).count() == 600


def test_a_process_killed_while_appending_keeps_every_committed_row(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "tests.unit.ledger_store_worker", "append", str(path), "w", "100000"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 300:
            break
    proc.kill()
    proc.wait(timeout=10)
    store = SqliteLedgerStore(path)
    assert committed <= store.count() <= committed + 1  # the row in flight may have landed too
    store.append(row("after", 0))  # and the store takes writes again


def test_a_file_that_is_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"not a database at all, just text" * 100)
    with pytest.raises(LedgerStoreError, match=r"is not a readable SQLite database.*mv '"):
        SqliteLedgerStore(path)


def test_a_database_of_something_else_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(LedgerStoreError, match=r"something else .*invoices.*TIERFLOW_LEDGER"):
        SqliteLedgerStore(path)
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["invoices"]


def test_a_store_locked_by_another_process_is_said_as_such(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    SqliteLedgerStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = SqliteLedgerStore.__new__(SqliteLedgerStore)
        with pytest.raises(LedgerStoreError, match="locked by another process"):
            SqliteLedgerStore.__init__(store, path, busy_timeout_s=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_missing_store_is_an_error_for_a_reader_and_new_for_a_writer(tmp_path: Path) -> None:
    with pytest.raises(LedgerStoreError, match=r"no ledger store at .* yet"):
        open_ledger_store(str(tmp_path / "none.sqlite"), create=False)
    assert open_ledger_store(str(tmp_path / "new" / "l.sqlite")).count() == 0


def test_an_older_store_is_migrated_and_a_newer_one_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "l.sqlite"
    old = SqliteLedgerStore(path)
    old.append(row("w", 0))
    old.close()
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store_module, "MIGRATIONS", {1: (f"ALTER TABLE {store_module.TABLE} ADD COLUMN note TEXT",)})
    migrated = SqliteLedgerStore(path)
    assert migrated.schema_version() == 2 and migrated.count() == 1
    assert "note" in [r[1] for r in migrated.query(f"PRAGMA table_info({store_module.TABLE})")]
    migrated.close()
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    with pytest.raises(LedgerStoreError, match="schema version 2, newer than this tierflow's"):
        SqliteLedgerStore(path)


# -- the engine writing to it --------------------------------------------------------------------


def _tiers(tmp_path: Path) -> tierflow.TierConfig:
    path = tmp_path / "tiers.toml"
    path.write_text(TIERS_TOML)
    return tierflow.load_tier_config(str(path))


def test_each_model_call_of_a_run_is_a_settled_row(ledger: Path, tmp_path: Path) -> None:
    result = tierflow.run(WORKFLOW, "Please refund order 4417, I paid 23.90 EUR.", tiers=_tiers(tmp_path), checkpointer=InMemorySaver())
    assert result.status == "done"
    store = default_ledger_store()
    assert store is not None
    rows = store.rows()
    assert len(rows) == len(result.ledger) == 3
    assert {r.source for r in rows} == {"run"} and {r.graph for r in rows} == {"refund_desk"}
    assert {r.thread_id for r in rows} == {result.thread} and {r.run_id for r in rows} == {result.run_id}
    assert [r.item_id for r in rows] == ["0:classify", "1:extract", "2:reply"]
    assert all(r.verdict == "pass" and r.outcome == "verified" and r.execution == 1 for r in rows)
    assert len({r.graph_version for r in rows}) == 1 and rows[0].graph_version
    assert sum(r.cost_usd for r in rows) == pytest.approx(result.cost_usd)
    assert sum(r.top_tier_cost_usd for r in rows) == pytest.approx(result.all_frontier_cost_usd)


def invents_amount(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    answer = reply(messages, tools)
    return {**answer, "amount": "99.99"} if "order_id" in answer else answer


def test_failed_attempts_carry_their_verdict_escalation_and_the_human_outcome(ledger: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiers.toml"
    ref = "tests.unit.test_ledger_store:invents_amount"
    path.write_text(tierflow.scripted_ladder_toml(ref, ref))
    result = tierflow.run(WORKFLOW, "Please refund order 4417", tiers=str(path), checkpointer=InMemorySaver())
    assert result.status == "needs_human"
    store = default_ledger_store()
    assert store is not None
    extract = [r for r in store.rows() if r.item_id == "1:extract"]
    assert len(extract) >= 2 and all(r.verdict == "fail" and r.outcome == "human" for r in extract)
    assert all(r.escalation in ("retry", "escalate", "top") for r in extract)
    assert extract[-1].escalation == "top"
    assert {r.tier for r in extract} == {"slm", "frontier"}


def test_the_ledger_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LEDGER_ENV_VAR, "off")
    forget_default_stores()
    result = tierflow.run(WORKFLOW, "Please refund order 4417, I paid 23.90 EUR.", tiers=_tiers(tmp_path), checkpointer=InMemorySaver())
    assert result.status == "done" and default_ledger_store() is None
    assert not list(tmp_path.rglob("ledger.sqlite"))


def test_a_run_goes_on_when_its_store_is_unusable_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "ledger.sqlite"
    bad.write_bytes(b"garbage" * 500)
    monkeypatch.setenv(LEDGER_ENV_VAR, str(bad))
    forget_default_stores()
    events: list[dict[str, Any]] = []
    result = tierflow.run(WORKFLOW, "Please refund order 4417, I paid 23.90 EUR.", tiers=_tiers(tmp_path),
                          checkpointer=InMemorySaver(), on_event=lambda e: events.append(dict(e)))
    assert result.status == "done" and len(result.ledger) == 3
    assert "ledger store" in capsys.readouterr().err
    assert [e for e in events if e["type"] == "ledger_error"], events
    forget_default_stores()


def test_a_node_killed_after_its_call_writes_a_rerun_row_and_resuming_doubles_nothing(ledger: Path, tmp_path: Path) -> None:
    ckpt, marker = tmp_path / "ckpt.sqlite", tmp_path / "hanging"
    env = {**__import__("os").environ, LEDGER_ENV_VAR: str(ledger)}
    argv = [sys.executable, "-m", "tests.unit.ledger_store_worker", "graph", str(ledger), str(ckpt), "t1", str(marker)]
    kill_at_marker(argv, marker, timeout_s=60, env=env)
    store = open_ledger_store(str(ledger))
    before = store.rows()
    assert [(r.item_id, r.execution, r.verdict) for r in before] == [("0:classify", 1, "pass"), ("1:extract", 1, None)]

    graph, conn = compiled(ckpt, marker)
    out = graph.invoke(None, {"configurable": {"thread_id": "t1"}})
    conn.close()
    assert out["status"] == "done"
    after = store.rows()
    assert [(r.item_id, r.execution, r.verdict, r.outcome) for r in after] == [
        ("0:classify", 1, "pass", "verified"),
        ("1:extract", 1, None, "verified"),  # the request the kill cut short: paid, never judged
        ("1:extract", 2, "pass", "verified"),  # the node run again: a new, paid request
    ]
    assert after[2].rerun and after[0].request_id == before[0].request_id
