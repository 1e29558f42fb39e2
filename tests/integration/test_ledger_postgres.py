"""The ledger store on the real PostgreSQL that `make test` starts: the same guarantees as
SQLite (re-runs numbered, nothing lost under concurrent processes), a graph run writing
to it by DSN, and an unreachable server said in one line."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from langgraph.checkpoint.memory import InMemorySaver

import tierflow
from tests.conftest import REPO_ROOT
from tests.integration.pg import require_postgres
from tests.unit.ledger_store_worker import row
from tests.unit.own_graph_scripts import TIERS_TOML
from tierflow.graphs.examples.refund_desk import WORKFLOW
from tierflow.model_tiers.ledger_store import (
    LEDGER_ENV_VAR,
    LedgerStoreError,
    Settlement,
    default_ledger_store,
    forget_default_stores,
    open_ledger_store,
)


@pytest.fixture()
def pg_ledger() -> Iterator[str]:
    """A DSN whose search_path is a fresh schema: each test has a store of its own."""
    base = require_postgres()
    schema = f"ledger_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_rows_reruns_and_settlements(pg_ledger: str) -> None:
    store = open_ledger_store(pg_ledger)
    assert store.dialect == "postgresql" and store.schema_version() == 1
    first = store.append(row("w", 0, run_id="r"))
    again = store.append(row("w", 0, run_id="r"))
    assert (first.execution, again.execution) == (1, 2)
    store.settle([again.request_id], Settlement(verdict="pass", reason=None, signals={"p_right": 0.9}, escalation=None))
    store.finish_item("r", "0:step", "verified")
    got = store.rows()
    assert [(r.execution, r.verdict, r.p_right, r.outcome) for r in got] == [(1, None, None, "verified"), (2, "pass", 0.9, "verified")]
    assert store.prune(got[-1].ts + 1, dry_run=True) == 2 and store.count() == 2
    assert store.prune(got[-1].ts + 1) == 2 and store.count() == 0
    store.close()


def test_concurrent_processes_lose_no_row(pg_ledger: str) -> None:
    open_ledger_store(pg_ledger).close()
    code = (
        "import sys; from tests.unit.ledger_store_worker import row; "
        "from tierflow.model_tiers.ledger_store import open_ledger_store; s = open_ledger_store(sys.argv[1]); "
        "[s.append(row(sys.argv[2], i, run_id='shared', seq=i % 7)) for i in range(80)]"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", code, pg_ledger, f"w{i}"], cwd=REPO_ROOT, stderr=subprocess.PIPE) for i in range(4)
    ]
    for w in workers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err.decode()
    store = open_ledger_store(pg_ledger)
    rows = store.rows()
    assert len(rows) == 320
    # Four writers raced for the same keys: each key's executions are 1..n, none taken twice.
    by_key: dict[int, list[int]] = {}
    for r in rows:
        by_key.setdefault(r.seq, []).append(r.execution)
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in by_key.values())
    store.close()


def test_a_graph_run_writes_to_the_store_its_dsn_names(pg_ledger: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LEDGER_ENV_VAR, pg_ledger)
    forget_default_stores()
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(TIERS_TOML)
    try:
        result = tierflow.run(WORKFLOW, "Please refund order 4417, I paid 23.90 EUR.", tiers=str(tiers), checkpointer=InMemorySaver())
        store = default_ledger_store()
        assert store is not None and store.dialect == "postgresql"
        rows = store.rows()
        assert [(r.item_id, r.verdict, r.outcome, r.source) for r in rows] == [
            ("0:classify", "pass", "verified", "run"), ("1:extract", "pass", "verified", "run"), ("2:reply", "pass", "verified", "run"),
        ]
        assert {r.run_id for r in rows} == {result.run_id}
    finally:
        forget_default_stores()


def test_an_unreachable_server_is_one_line_with_the_password_masked() -> None:
    with pytest.raises(LedgerStoreError) as caught:
        open_ledger_store("postgresql://tierflow:s3cret-pw@127.0.0.1:9/nothing?connect_timeout=2")
    message = str(caught.value)
    assert "cannot reach the PostgreSQL ledger store" in message and "TIERFLOW_LEDGER" in message
    assert "s3cret-pw" not in message and "***" in message
