"""The SQLite ledger store: the default, one file under $TIERFLOW_HOME.

WAL mode lets reports read while runs write; a writer waits up to `busy_timeout_s` for
another process's write to finish before the store says it is locked.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tierflow.model_tiers.home import corrupt_database_message
from tierflow.model_tiers.ledger_store.store import META_TABLE, LedgerStore, LedgerStoreError, create_statements

__all__ = ["SqliteLedgerStore"]

_TYPES = {"text": "TEXT", "real": "REAL", "int": "INTEGER"}


class SqliteLedgerStore(LedgerStore):
    dialect = "sqlite"

    def __init__(self, path: Path, *, create: bool = True, busy_timeout_s: float = 30.0) -> None:
        super().__init__(str(path))
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        if not path.exists():
            if not create:
                raise LedgerStoreError(
                    f"no ledger store at {path} yet: runs write it as they make model calls "
                    "(set TIERFLOW_LEDGER to read another store)"
                )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise LedgerStoreError(f"cannot create the folder of the ledger store {path}: {err.strerror}") from None
        self._check_is_ours()
        self._set_up(create_statements(_TYPES.__getitem__))

    def _connect(self) -> Any:
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed row survives the process being killed (only a
            # power loss may drop the last commits), at a fraction of FULL's fsyncs.
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as err:
            typed = self._error(err, "open it")
            if typed is None:
                raise
            raise typed from err
        return conn

    @contextlib.contextmanager
    def _transaction(self, conn: Any) -> Iterator[Any]:
        cursor = conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")  # the write lock first: two processes set up one schema
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    def _param(self, sql: str) -> str:
        return sql

    def _is_duplicate(self, err: Exception) -> bool:
        return isinstance(err, sqlite3.IntegrityError) and "UNIQUE" in str(err)

    def _error(self, err: Exception, doing: str) -> LedgerStoreError | None:
        if not isinstance(err, sqlite3.Error):
            return None
        text = str(err)
        if isinstance(err, sqlite3.OperationalError) and "locked" in text:
            return LedgerStoreError(
                f"the ledger store {self.path} stayed locked by another process for {self._busy_timeout_s:g}s "
                f"(could not {doing}): stop the process holding it, or point TIERFLOW_LEDGER at another file"
            )
        if isinstance(err, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text):
            return LedgerStoreError(corrupt_database_message(self.path, err, what="ledger store"))
        if isinstance(err, sqlite3.OperationalError) and ("readonly" in text or "unable to open" in text):
            return LedgerStoreError(
                f"cannot write the ledger store {self.path} ({text}): make it writable, or point TIERFLOW_LEDGER at another file"
            )
        return LedgerStoreError(f"the ledger store {self.path} could not {doing}: {text}")

    def _check_is_ours(self) -> None:
        """A file that is not a database, or a database of something else, is said as such
        before anything is written to it."""
        try:
            tables = {r[0] for r in self._conn().execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as err:
            typed = self._error(err, "read it")
            raise (typed or err) from err
        if tables and META_TABLE not in tables:
            shown = ", ".join(sorted(tables)[:5])
            raise LedgerStoreError(
                f"{self.path} is a SQLite database of something else (tables: {shown}), not a tierflow ledger store: "
                "point TIERFLOW_LEDGER at another file (a new one is created)"
            )
