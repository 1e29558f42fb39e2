"""The PostgreSQL ledger store, by DSN: for LangGraph Server deployments, where runs of one
graph come from several processes (and machines) at once."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from tierflow.model_tiers.errors import MissingDependency
from tierflow.model_tiers.ledger_store.store import LedgerStore, LedgerStoreError, create_statements

__all__ = ["PostgresLedgerStore", "masked_dsn"]

_TYPES = {"text": "TEXT", "real": "DOUBLE PRECISION", "int": "BIGINT"}
# Migrations and the first set-up take this advisory lock: two processes starting at once
# set the schema up once.
_SETUP_LOCK_ID = 0x7469_6572  # "tier"


def masked_dsn(dsn: str) -> str:
    """The DSN with its password hidden (what messages and reports show)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", re.sub(r"(password=)\S+", r"\1***", dsn))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependency("a PostgreSQL ledger store needs psycopg: pip install 'tierflow[postgres]'") from None
    return psycopg


class PostgresLedgerStore(LedgerStore):
    dialect = "postgresql"

    def __init__(self, dsn: str, *, connect_timeout_s: int = 10) -> None:
        super().__init__(masked_dsn(dsn))
        self._dsn = dsn
        self._connect_timeout_s = connect_timeout_s
        self._psycopg = _psycopg()
        self._set_up(create_statements(_TYPES.__getitem__))

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s)
        except self._psycopg.Error as err:
            typed = self._error(err, "connect")
            raise (typed or err) from err

    @contextlib.contextmanager
    def _transaction(self, conn: Any) -> Iterator[Any]:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK_ID,))
            yield cursor

    def _param(self, sql: str) -> str:
        # The shared SQL has no literal '%' or '?' other than placeholders.
        return sql.replace("?", "%s")

    def _is_duplicate(self, err: Exception) -> bool:
        return isinstance(err, self._psycopg.errors.UniqueViolation)

    def _error(self, err: Exception, doing: str) -> LedgerStoreError | None:
        if not isinstance(err, self._psycopg.Error):
            return None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, self._psycopg.OperationalError):
            return LedgerStoreError(
                f"cannot reach the PostgreSQL ledger store {self.location} (could not {doing}): {first}; "
                "check the server and the DSN in TIERFLOW_LEDGER"
            )
        if isinstance(err, self._psycopg.errors.InsufficientPrivilege):
            return LedgerStoreError(
                f"the PostgreSQL ledger store {self.location} refused to {doing}: {first}; "
                "grant the role CREATE and INSERT/UPDATE/SELECT/DELETE on its tables"
            )
        return LedgerStoreError(f"the PostgreSQL ledger store {self.location} could not {doing}: {first}")
