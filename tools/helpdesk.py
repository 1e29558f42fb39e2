"""The helpdesk: support tickets in a SQLite file, filed idempotently per graph step.

A graph step that files a ticket may run more than once (a retry after a crash, a resumed
thread, an escalation that replays the step). Each filing therefore carries an
``idempotency_key`` (e.g. ``f"{thread_id}:{step}"``): the first filing with a key writes
the ticket, every later one returns the same ticket id and writes nothing. The key is
UNIQUE in the table and the check-and-insert runs in one ``BEGIN IMMEDIATE`` transaction,
so this holds across threads and processes sharing the file.

A connection is opened per operation: ``sqlite3`` connections must not be shared between
threads, and opening one on a local file costs microseconds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from langchain_core.tools import InjectedToolArg, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierflow.model_tiers.errors import TierflowError, ToolRefusal
from tierflow.model_tiers.home import corrupt_database_message, home_path

__all__ = [
    "TicketStatus",
    "TICKET_STATUSES",
    "Ticket",
    "FiledTicket",
    "NewTicket",
    "Helpdesk",
    "HelpdeskError",
    "InvalidTicket",
    "TicketNotFound",
    "default_helpdesk_path",
    "file_ticket_tool",
    "get_ticket_tool",
    "helpdesk_tools",
]

TicketStatus = Literal["open", "drafted", "needs_human", "resolved"]
TICKET_STATUSES: tuple[str, ...] = get_args(TicketStatus)

_SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 30.0
_MAX_KEY_CHARS = 256
_MAX_MESSAGE_CHARS = 20_000

# DDL cannot take parameters; these statements are constants, never built from input.
_SCHEMA_STATEMENTS = (
    """
    CREATE TABLE IF NOT EXISTS tickets (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        idempotency_key   TEXT    NOT NULL UNIQUE,
        thread_id         TEXT    NOT NULL,
        message           TEXT    NOT NULL,
        intent            TEXT    NOT NULL,
        entities          TEXT    NOT NULL DEFAULT '{}',
        draft_reply       TEXT    NOT NULL DEFAULT '',
        cited_snippet_ids TEXT    NOT NULL DEFAULT '[]',
        status            TEXT    NOT NULL
                          CHECK (status IN ('open', 'drafted', 'needs_human', 'resolved')),
        decided_by        TEXT    NOT NULL,
        created_at        TEXT    NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS tickets_by_thread ON tickets (thread_id, id)",
    "PRAGMA user_version = 1",
)

_SELECT_TICKETS = (
    "SELECT id, idempotency_key, thread_id, message, intent, entities, draft_reply, "
    "cited_snippet_ids, status, decided_by, created_at FROM tickets "
)


class HelpdeskError(TierflowError):
    """Base class of the helpdesk's errors."""


class InvalidTicket(HelpdeskError, ToolRefusal, ValueError):
    """The fields given for a new ticket are not acceptable."""


class TicketNotFound(HelpdeskError, ToolRefusal, LookupError):
    """No ticket has the requested id."""


class NewTicket(BaseModel):
    """What a caller supplies to file a ticket (validated before anything is written)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    idempotency_key: str = Field(min_length=1, max_length=_MAX_KEY_CHARS)
    thread_id: str = Field(min_length=1)
    message: str = Field(min_length=1, max_length=_MAX_MESSAGE_CHARS)
    intent: str = Field(min_length=1)
    entities: dict[str, Any] = Field(default_factory=dict)
    draft_reply: str = ""
    cited_snippet_ids: tuple[str, ...] = ()
    status: TicketStatus = "open"
    decided_by: str = Field(min_length=1, description="the tier (or 'human') that decided the ticket")


class Ticket(NewTicket):
    """A stored ticket."""

    id: int
    created_at: datetime


class FiledTicket(BaseModel):
    """The result of filing: the ticket's id, and whether this call wrote it."""

    model_config = ConfigDict(frozen=True)

    ticket_id: int
    created: bool


def default_helpdesk_path() -> Path:
    """``$TIERFLOW_HOME/helpdesk.sqlite``, else ``./.tierflow/helpdesk.sqlite``."""
    return home_path() / "helpdesk.sqlite"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _validation_message(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'ticket'}: {e['msg']}" for e in err.errors()
    )


class Helpdesk:
    """Tickets in the SQLite file at ``path`` (default: ``default_helpdesk_path()``).

    The file and schema are created on first use, not at construction.
    """

    def __init__(self, path: str | Path | None = None, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._path = Path(path) if path is not None else default_helpdesk_path()
        self._clock = clock
        # Set once the schema exists; an Event because threads read it outside the lock.
        self._ready = threading.Event()
        self._ready_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"Helpdesk(path={str(self._path)!r})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        with closing(self._raw_connection()) as conn:
            yield conn

    def _raw_connection(self) -> sqlite3.Connection:
        try:
            # Autocommit mode: transactions are opened explicitly where they are needed.
            return sqlite3.connect(self._path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as err:
            raise HelpdeskError(f"cannot open the helpdesk database {self._path}: {err}") from err

    def open(self) -> Helpdesk:
        """Create or check the database now (graphs call it when their resources open, so a
        corrupt file is reported before any model call is paid for)."""
        self._ensure_schema()
        return self

    def _ensure_schema(self) -> None:
        if self._ready.is_set():
            return
        with self._ready_lock:
            if self._ready.is_set():
                return
            self._path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._create_schema()
            except sqlite3.DatabaseError as err:
                if isinstance(err, sqlite3.OperationalError):
                    raise  # locked, full disk, permissions: not a damaged file
                raise HelpdeskError(corrupt_database_message(self._path, err, what="helpdesk database")) from None
            self._ready.set()

    def _create_schema(self) -> None:
        with closing(self._raw_connection()) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise HelpdeskError(
                    f"the helpdesk database {self._path} has schema version {version}, newer than "
                    f"this tierflow ({_SCHEMA_VERSION}): upgrade tierflow or use another file"
                )
            # WAL lets readers proceed while another process files a ticket.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA_STATEMENTS:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def file_ticket(
        self,
        *,
        idempotency_key: str,
        thread_id: str,
        message: str,
        intent: str,
        decided_by: str,
        entities: Mapping[str, Any] | None = None,
        draft_reply: str = "",
        cited_snippet_ids: Sequence[str] = (),
        status: TicketStatus = "open",
    ) -> FiledTicket:
        """File a ticket once per ``idempotency_key``.

        The first call with a key writes the ticket (``created=True``). Any later call with
        the same key writes nothing and returns the existing ticket's id (``created=False``),
        even if its other fields differ: the first filing is the record.
        """
        try:
            # Validated as the caller gave them: pydantic, not a conversion here, judges each value
            # (a list is no mapping of entities, a string no sequence of snippet ids).
            ticket = NewTicket.model_validate(
                {
                    "idempotency_key": idempotency_key, "thread_id": thread_id, "message": message, "intent": intent,
                    "decided_by": decided_by, "entities": entities if entities is not None else {}, "draft_reply": draft_reply,
                    "cited_snippet_ids": cited_snippet_ids, "status": status,
                }
            )
        except ValidationError as err:
            raise InvalidTicket(f"cannot file the ticket: {_validation_message(err)}") from err
        try:
            entities_json = json.dumps(ticket.entities, ensure_ascii=False, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise InvalidTicket(
                f"cannot file the ticket: entities must be JSON-serialisable (str, number, bool, "
                f"null, lists and objects of them): {err}"
            ) from err
        cited_json = json.dumps(list(ticket.cited_snippet_ids), ensure_ascii=False)

        with self._connect() as conn:
            # IMMEDIATE takes the write lock before the lookup, so no other connection (thread
            # or process) can file the same key between our lookup and our insert. The UNIQUE
            # constraint on the key stays as the backstop: a violation fails loudly.
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT id FROM tickets WHERE idempotency_key = ?", (ticket.idempotency_key,)
                ).fetchone()
                if row is not None:
                    ticket_id, created = int(row[0]), False
                else:
                    inserted = conn.execute(
                        "INSERT INTO tickets (idempotency_key, thread_id, message, intent, entities, "
                        "draft_reply, cited_snippet_ids, status, decided_by, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        (
                            ticket.idempotency_key, ticket.thread_id, ticket.message, ticket.intent,
                            entities_json, ticket.draft_reply, cited_json, ticket.status,
                            ticket.decided_by, self._clock().isoformat(),
                        ),
                    ).fetchall()
                    ticket_id, created = int(inserted[0][0]), True
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return FiledTicket(ticket_id=ticket_id, created=created)

    def get_ticket(self, ticket_id: int) -> Ticket | None:
        """The ticket with ``ticket_id``, or None."""
        with self._connect() as conn:
            row = conn.execute(_SELECT_TICKETS + "WHERE id = ?", (int(ticket_id),)).fetchone()
        return _row_to_ticket(row) if row is not None else None

    def get_ticket_by_key(self, idempotency_key: str) -> Ticket | None:
        """The ticket filed with ``idempotency_key``, or None."""
        with self._connect() as conn:
            row = conn.execute(
                _SELECT_TICKETS + "WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        return _row_to_ticket(row) if row is not None else None

    def list_tickets(
        self, *, thread_id: str | None = None, status: TicketStatus | None = None, limit: int = 100
    ) -> list[Ticket]:
        """Tickets in filing order, optionally only one thread's and/or one status."""
        if status is not None and status not in TICKET_STATUSES:
            raise InvalidTicket(f"unknown ticket status {status!r}; use one of {', '.join(TICKET_STATUSES)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidTicket(f"limit must be a positive integer, got {limit!r}")
        # Fixed SQL text; a NULL parameter switches its filter off.
        with self._connect() as conn:
            rows = conn.execute(
                _SELECT_TICKETS + "WHERE (?1 IS NULL OR thread_id = ?1) AND (?2 IS NULL OR status = ?2) "
                "ORDER BY id LIMIT ?3",
                (thread_id, status, limit),
            ).fetchall()
        return [_row_to_ticket(row) for row in rows]


def _row_to_ticket(row: tuple[Any, ...]) -> Ticket:
    (ticket_id, key, thread_id, message, intent, entities, draft_reply, cited, status,
     decided_by, created_at) = row
    return Ticket(
        id=ticket_id, idempotency_key=key, thread_id=thread_id, message=message, intent=intent,
        entities=json.loads(entities), draft_reply=draft_reply,
        cited_snippet_ids=tuple(json.loads(cited)), status=status, decided_by=decided_by,
        created_at=datetime.fromisoformat(created_at),
    )


# --------------------------------------------------------------------------- LangChain tools


def file_ticket_tool(helpdesk: Helpdesk) -> StructuredTool:
    """The ``file_ticket`` write tool bound to ``helpdesk``.

    The model fills the ticket's content. ``idempotency_key``, ``thread_id`` and
    ``decided_by`` are injected arguments: hidden from the model's schema
    (``tool.tool_call_schema``), they must be added by the graph when it executes the call
    (``{**call["args"], "idempotency_key": f"{thread_id}:{step}", ...}``).
    """

    def file_ticket(
        message: str,
        intent: str,
        draft_reply: str,
        idempotency_key: Annotated[str, InjectedToolArg],
        thread_id: Annotated[str, InjectedToolArg],
        decided_by: Annotated[str, InjectedToolArg],
        entities: dict[str, Any] | None = None,
        cited_snippet_ids: list[str] | None = None,
        status: TicketStatus = "drafted",
    ) -> dict[str, Any]:
        """File a support ticket with the customer's message, its intent, the extracted
        entities, the drafted reply and the ids of the policy paragraphs it cites."""
        filed = helpdesk.file_ticket(
            idempotency_key=idempotency_key, thread_id=thread_id, message=message, intent=intent,
            decided_by=decided_by, entities=entities, draft_reply=draft_reply,
            cited_snippet_ids=cited_snippet_ids or (), status=status,
        )
        return filed.model_dump()

    return StructuredTool.from_function(func=file_ticket, name="file_ticket", parse_docstring=False)


def get_ticket_tool(helpdesk: Helpdesk) -> StructuredTool:
    """The read-only ``get_ticket`` tool bound to ``helpdesk``."""

    def get_ticket(ticket_id: int) -> dict[str, Any]:
        """Look up a support ticket by its id."""
        ticket = helpdesk.get_ticket(ticket_id)
        if ticket is None:
            raise TicketNotFound(f"no ticket has id {ticket_id} in {helpdesk.path}")
        return ticket.model_dump(mode="json")

    return StructuredTool.from_function(func=get_ticket, name="get_ticket")


def helpdesk_tools(helpdesk: Helpdesk) -> list[StructuredTool]:
    """Every helpdesk tool bound to ``helpdesk``: ``file_ticket`` and ``get_ticket``."""
    return [file_ticket_tool(helpdesk), get_ticket_tool(helpdesk)]
