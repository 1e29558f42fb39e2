"""The ledger store: every model request as a row, kept apart from the checkpoints.

Two implementations share the SQL here: SQLite (`sqlite.py`, the default, a file under
$TIERFLOW_HOME) and PostgreSQL (`postgres.py`, by DSN, for LangGraph Server deployments).
Each statement is one atomic write, so concurrent runs and processes lose no row, and a
process killed between two requests leaves every earlier row in place.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

from tierflow.model_tiers.errors import TierflowError
from tierflow.model_tiers.ledger_store.rows import COLUMNS, KEY_COLUMNS, LedgerRow, Settlement

__all__ = ["LedgerStore", "LedgerStoreError", "SCHEMA_VERSION", "MIGRATIONS", "TABLE", "META_TABLE", "VERSIONS_TABLE", "Dialect"]

Dialect = Literal["sqlite", "postgresql"]
TABLE = "tierflow_ledger"
META_TABLE = "tierflow_ledger_meta"
VERSIONS_TABLE = "tierflow_ledger_versions"

# The schema this code writes. A store at an older version is migrated on open by the steps
# in MIGRATIONS (version n -> n + 1, each a list of statements run in one transaction); a
# store at a newer version is refused (it was written by a newer tierflow).
SCHEMA_VERSION = 1
MIGRATIONS: dict[int, tuple[str, ...]] = {}


class LedgerStoreError(TierflowError):
    """The ledger store cannot be opened or written: the message names the store and the fix."""


def create_statements(types: Callable[[str], str]) -> tuple[str, ...]:
    """The schema at SCHEMA_VERSION, in a dialect's column types (`types` maps a logical
    type: text, real, int)."""
    kinds = {
        "ts": "real", "attempt": "int", "seq": "int", "execution": "int", "input_tokens": "int", "output_tokens": "int",
        "tokens_estimated": "int", "latency_s": "real", "cost_usd": "real", "top_tier_cost_usd": "real", "cache_hit": "int",
        "confidence": "real", "p_right": "real",
    }
    required = {"request_id", "ts", "day", "source", "run_id", "item_id", "label", "attempt", "seq", "execution", "tier"}
    columns = ",\n  ".join(
        f"{c} {types(kinds.get(c, 'text'))}{' NOT NULL' if c in required else ''}{' PRIMARY KEY' if c == 'request_id' else ''}"
        for c in COLUMNS
    )
    key = ", ".join((*KEY_COLUMNS, "execution"))
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (\n  {columns},\n  UNIQUE ({key})\n)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_ts ON {TABLE} (ts)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_graph_ts ON {TABLE} (graph, ts)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_item ON {TABLE} (run_id, item_id)",
        f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # What each graph version was made of: the report finds a version's calibration
        # artifact here (its text, kept: the file may have moved or changed since).
        f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (\n  graph_version TEXT PRIMARY KEY,\n  graph TEXT,\n"
        f"  tiers_file TEXT,\n  calibration_path TEXT,\n  calibration TEXT,\n  first_seen {types('real')} NOT NULL\n)",
    )


class LedgerStore(ABC):
    """Append, settle and read ledger rows. Thread-safe: one connection per thread."""

    dialect: Dialect

    def __init__(self, location: str) -> None:
        # The file, or the DSN with its password masked: what messages name.
        self.location = location
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    # -- what a dialect provides ------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new connection in autocommit mode."""

    @abstractmethod
    def _transaction(self, conn: Any) -> AbstractContextManager[Any]:
        """A write transaction that holds the store's write lock (migrations, schema set-up)."""

    @abstractmethod
    def _error(self, err: Exception, doing: str) -> LedgerStoreError | None:
        """The store's message for a driver error (None: not a driver error, a bug)."""

    @abstractmethod
    def _param(self, sql: str) -> str:
        """`sql` written with `?` placeholders, in the driver's style."""

    @abstractmethod
    def _is_duplicate(self, err: Exception) -> bool:
        """Whether `err` is a unique-key conflict (two writers took the same execution)."""

    # -- shared ------------------------------------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _run(self, doing: str, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            cursor = self._conn().cursor()
            cursor.execute(self._param(sql), tuple(params))
            return cursor
        except Exception as err:
            typed = self._error(err, doing)
            if typed is None:
                raise
            raise typed from err

    def schema_version(self) -> int:
        row = self._run("read the schema version", f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _set_up(self, statements: Sequence[str]) -> None:
        """Create the schema if the store is new, else migrate it to SCHEMA_VERSION."""
        conn = self._conn()
        try:
            with self._transaction(conn) as cursor:
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                cursor.execute(self._param(f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'"))
                found = cursor.fetchone()
                version = int(found[0]) if found else 0
                if version > SCHEMA_VERSION:
                    raise LedgerStoreError(
                        f"the ledger store {self.location} has schema version {version}, newer than this tierflow's "
                        f"({SCHEMA_VERSION}): upgrade tierflow, or point TIERFLOW_LEDGER at another store"
                    )
                if version == 0:
                    for statement in statements:
                        cursor.execute(statement)
                else:
                    for step in range(version, SCHEMA_VERSION):
                        for statement in MIGRATIONS[step]:
                            cursor.execute(statement)
                if version != SCHEMA_VERSION:
                    cursor.execute(self._param(f"DELETE FROM {META_TABLE} WHERE key = 'schema_version'"))
                    cursor.execute(
                        self._param(f"INSERT INTO {META_TABLE} (key, value) VALUES ('schema_version', ?)"), (str(SCHEMA_VERSION),)
                    )
        except LedgerStoreError:
            raise
        except Exception as err:
            typed = self._error(err, "set up its schema")
            if typed is None:
                raise
            raise typed from err

    def append(self, row: LedgerRow) -> LedgerRow:
        """Write `row`; its `execution` is one more than any earlier row of the same key
        (a node run again after a kill). Returns the row as written."""
        where = " AND ".join(f"{c} = ?" for c in KEY_COLUMNS)
        next_execution = f"(SELECT COALESCE(MAX(execution), 0) + 1 FROM {TABLE} WHERE {where})"
        marks = ", ".join("?" if c != "execution" else next_execution for c in COLUMNS)
        sql = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks}) RETURNING execution"
        # The values in column order, the key's values standing where `execution` is.
        params: list[Any] = []
        for column, value in zip(COLUMNS, row.values(), strict=True):
            params.extend([getattr(row, c) for c in KEY_COLUMNS] if column == "execution" else [value])
        key = [getattr(row, c) for c in KEY_COLUMNS]
        for _ in range(5):
            try:
                cursor = self._conn().cursor()
                cursor.execute(self._param(sql), params)
                found = cursor.fetchone()
                cursor.close()
            except Exception as err:
                if self._is_duplicate(err):
                    continue  # another writer took this execution number: take the next
                typed = self._error(err, "append a row")
                if typed is None:
                    raise
                raise typed from err
            execution = int(found[0]) if found else 1
            return row if execution == row.execution else _with_execution(row, execution)
        raise LedgerStoreError(f"the ledger store {self.location}: five writers raced for one request key ({key}); this is a bug")

    def note_version(
        self, graph_version: str, *, graph: str, tiers_file: str | None, calibration_path: str | None, calibration: str | None
    ) -> None:
        """Record what `graph_version` is made of (once: the first writer's record stands)."""
        self._run(
            "record a graph version",
            f"INSERT INTO {VERSIONS_TABLE} (graph_version, graph, tiers_file, calibration_path, calibration, first_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (graph_version) DO NOTHING",
            (graph_version, graph, tiers_file, calibration_path, calibration, time.time()),
        ).close()

    def settle(self, request_ids: Sequence[str], settlement: Settlement) -> None:
        """Write the verifier's verdict (and what followed) onto the rows of `request_ids`."""
        if not request_ids:
            return
        marks = ", ".join("?" for _ in request_ids)
        self._run(
            "settle a verdict",
            f"UPDATE {TABLE} SET verdict = ?, reason = ?, p_right = ?, signals = ?, escalation = ? WHERE request_id IN ({marks})",
            (
                settlement.verdict, settlement.reason, settlement.p_right, settlement.signals_json(), settlement.escalation,
                *request_ids,
            ),
        ).close()

    def finish_item(self, run_id: str, item_id: str, outcome: str) -> None:
        """The step's final outcome, on every row of the step (all its attempts)."""
        self._run(
            "record a step's outcome",
            f"UPDATE {TABLE} SET outcome = ? WHERE run_id = ? AND item_id = ? AND outcome IS NULL",
            (outcome, run_id, item_id),
        ).close()

    def prune(self, before_ts: float, *, dry_run: bool = False) -> int:
        """Delete (or count, with `dry_run`) the rows written before `before_ts`."""
        if dry_run:
            return int(self._run("count old rows", f"SELECT COUNT(*) FROM {TABLE} WHERE ts < ?", (before_ts,)).fetchone()[0])
        cursor = self._run("delete old rows", f"DELETE FROM {TABLE} WHERE ts < ?", (before_ts,))
        return int(cursor.rowcount)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query written with `?` placeholders (the report's queries)."""
        return [tuple(r) for r in self._run("read", sql, params).fetchall()]

    def iter_query(self, sql: str, params: Sequence[Any] = (), *, batch: int = 10_000) -> Iterator[tuple[Any, ...]]:
        cursor = self._run("read", sql, params)
        while chunk := cursor.fetchmany(batch):
            yield from (tuple(r) for r in chunk)

    def rows(self, where: str = "1 = 1", params: Sequence[Any] = ()) -> list[LedgerRow]:
        """Whole rows (tests and exports; reports aggregate in SQL instead)."""
        found = self.query(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {where} ORDER BY ts, seq", params)
        return [_row(values) for values in found]

    def count(self) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {TABLE}")[0][0])

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()


def _with_execution(row: LedgerRow, execution: int) -> LedgerRow:
    from dataclasses import replace

    return replace(row, execution=execution)


def _row(values: Sequence[Any]) -> LedgerRow:
    data = dict(zip(COLUMNS, values, strict=True))
    data["tokens_estimated"] = bool(data["tokens_estimated"])
    data["cache_hit"] = bool(data["cache_hit"])
    return LedgerRow(**data)
