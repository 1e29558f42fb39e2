"""The ledger store: every model call, kept apart from the checkpoints, for `tierflow report`.

Where it is (one setting, read in one place): `$TIERFLOW_LEDGER` names a SQLite file or a
PostgreSQL DSN (``postgresql://...``), or ``off``; unset, it is
``$TIERFLOW_HOME/ledger.sqlite``. A store that cannot be opened or written never stops a
run: the failure is said once on stderr and recorded as a `ledger_error` event.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from tierflow.model_tiers.home import home_path
from tierflow.model_tiers.ledger import Usage
from tierflow.model_tiers.ledger_store.rows import COLUMNS, LedgerRow, Settlement, row_for_call
from tierflow.model_tiers.ledger_store.scope import (
    SOURCES,
    CallScope,
    Source,
    WrittenCall,
    call_scope,
    current_scope,
    current_source,
    labelled_calls,
    ledger_source,
)
from tierflow.model_tiers.ledger_store.store import SCHEMA_VERSION, TABLE, LedgerStore, LedgerStoreError
from tierflow.model_tiers.spec import TierConfig, TierSpec

__all__ = [
    "LEDGER_ENV_VAR",
    "LEDGER_FILE",
    "LedgerStore",
    "LedgerStoreError",
    "LedgerRow",
    "COLUMNS",
    "TABLE",
    "SCHEMA_VERSION",
    "Settlement",
    "CallScope",
    "WrittenCall",
    "Source",
    "SOURCES",
    "call_scope",
    "current_scope",
    "current_source",
    "labelled_calls",
    "ledger_source",
    "ledger_target",
    "open_ledger_store",
    "default_ledger_store",
    "record_call",
    "report_store_failure",
    "forget_default_stores",
    "default_store_error",
]

LEDGER_ENV_VAR = "TIERFLOW_LEDGER"
LEDGER_FILE = "ledger.sqlite"
_OFF = frozenset({"off", "none", "false", "0"})


def ledger_target(env: Mapping[str, str] | None = None) -> str | None:
    """The configured store (a file path or a DSN), or None when it is turned off."""
    value = (os.environ if env is None else env).get(LEDGER_ENV_VAR, "").strip()
    if value.lower() in _OFF:
        return None
    return value or str(home_path() / LEDGER_FILE)


def _is_dsn(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://")) or ("dbname=" in target and "host=" in target)


def open_ledger_store(target: str, *, create: bool = True) -> LedgerStore:
    """Open the store at `target` (a SQLite path or a PostgreSQL DSN), setting up or
    migrating its schema. `create=False`: a SQLite file that does not exist is an error
    (a report has nothing to read), not a new store."""
    if _is_dsn(target):
        from tierflow.model_tiers.ledger_store.postgres import PostgresLedgerStore

        return PostgresLedgerStore(target)
    from tierflow.model_tiers.ledger_store.sqlite import SqliteLedgerStore

    return SqliteLedgerStore(Path(target).expanduser(), create=create)


_STORES: dict[str, LedgerStore] = {}
_FAILED: dict[str, str] = {}
_LOCK = threading.Lock()


def default_ledger_store() -> LedgerStore | None:
    """The configured store, opened once per process; None when turned off or when it
    cannot be opened (said once on stderr: runs go on without it)."""
    target = ledger_target()
    if target is None:
        return None
    with _LOCK:
        if target in _STORES:
            return _STORES[target]
        if target in _FAILED:
            return None
        try:
            store = open_ledger_store(target)
        except LedgerStoreError as err:
            _FAILED[target] = str(err)
            report_store_failure(str(err))
            return None
        _STORES[target] = store
        return store


def default_store_error() -> str | None:
    """Why the configured store could not be opened in this process (None: it was, or is off)."""
    target = ledger_target()
    with _LOCK:
        return _FAILED.get(target) if target is not None else None


def forget_default_stores() -> None:
    """Close the stores `default_ledger_store` opened (tests change $TIERFLOW_LEDGER)."""
    with _LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
        _FAILED.clear()
    for store in stores:
        store.close()


def report_store_failure(message: str) -> None:
    print(f"tierflow: ledger store: {message} (the run goes on; its calls are not recorded there)", file=sys.stderr)


def record_call(spec: TierSpec, config: TierConfig, usage: Usage) -> None:
    """Append the row of one request to the current scope's store (the registry calls this
    for every request that reached a model). A store failure is reported once per scope
    and never raised into the run."""
    scope = current_scope()
    if scope is None or scope.store is None or scope.store_error is not None:
        return
    row = row_for_call(scope, spec, config, usage, scope.next_seq())
    try:
        written = scope.store.append(row)
    except LedgerStoreError as err:
        if scope.store_failed(str(err)):
            report_store_failure(str(err))
        return
    scope.note(WrittenCall(request_id=written.request_id, label=written.label, seq=written.seq))
