"""The retail business database: tau2-bench's ``db.json`` as a real SQLite file.

Tables mirror the tau2 data model. Scalars that tools filter or update in place get
columns (status, gift card balance); nested structures that are only ever read or
replaced whole (addresses, order items, fulfillments, payment history, variant options)
are JSON text columns, so every tool can return the record exactly as tau2 shows it.
``position`` columns keep the source order so dumps are faithful.

The mutable state (users with their payment methods, orders) can be dumped canonically
and hashed, so an eval can compare the database an agent produced with the one the gold
actions produce, as tau2-bench does.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierflow.model_tiers.errors import ConfigError
from tierflow.model_tiers.home import ENV_HOME, home_path
from tierflow.tools.datasets import dataset_file

__all__ = [
    "DATA_HOME_ENV_VAR",
    "SCHEMA_VERSION",
    "RetailDB",
    "build_retail_db",
    "copy_retail_db",
    "data_home",
    "default_retail_db_path",
    "default_retail_source",
    "load_item",
    "load_order",
    "load_product",
    "load_user",
    "open_retail_db",
    "snapshot_state",
    "state_hash",
]

DATA_HOME_ENV_VAR = ENV_HOME
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE products (
    product_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE items (
    item_id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products(product_id),
    options TEXT NOT NULL,
    available INTEGER NOT NULL CHECK (available IN (0, 1)),
    price REAL NOT NULL,
    position INTEGER NOT NULL
);
CREATE INDEX items_by_product ON items(product_id, position);
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    email TEXT NOT NULL,
    address TEXT NOT NULL,
    order_ids TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE INDEX users_by_email ON users(email COLLATE NOCASE);
CREATE INDEX users_by_name ON users(last_name COLLATE NOCASE, first_name COLLATE NOCASE);
CREATE TABLE payment_methods (
    payment_method_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    source TEXT NOT NULL CHECK (source IN ('gift_card', 'paypal', 'credit_card')),
    details TEXT NOT NULL,
    balance REAL,
    position INTEGER NOT NULL
);
CREATE INDEX payment_methods_by_user ON payment_methods(user_id, position);
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(user_id),
    status TEXT NOT NULL,
    address TEXT NOT NULL,
    items TEXT NOT NULL,
    fulfillments TEXT NOT NULL,
    payment_history TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    position INTEGER NOT NULL
);
CREATE INDEX orders_by_user ON orders(user_id);
CREATE TABLE applied_writes (
    idempotency_key TEXT PRIMARY KEY,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    result TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""

_ORDER_CORE_FIELDS = ("order_id", "user_id", "address", "items", "status", "fulfillments", "payment_history")


def data_home() -> Path:
    """tierflow's data folder: ``$TIERFLOW_HOME``, else ``./.tierflow``."""
    return home_path()


def default_retail_db_path() -> Path:
    return data_home() / "retail" / "retail.sqlite"


def default_retail_source() -> Path:
    """tau2's retail ``db.json`` in the shared datasets folder."""
    return dataset_file("tau2_retail", "db.json")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _source_rows(data: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    products: list[tuple[Any, ...]] = []
    items: list[tuple[Any, ...]] = []
    for position, product in enumerate(data["products"].values()):
        products.append((product["product_id"], product["name"], position))
        for item_position, variant in enumerate(product["variants"].values()):
            items.append(
                (
                    variant["item_id"],
                    product["product_id"],
                    _dumps(variant["options"]),
                    1 if variant["available"] else 0,
                    float(variant["price"]),
                    item_position,
                )
            )
    users: list[tuple[Any, ...]] = []
    methods: list[tuple[Any, ...]] = []
    for position, user in enumerate(data["users"].values()):
        users.append(
            (
                user["user_id"],
                user["name"]["first_name"],
                user["name"]["last_name"],
                user["email"],
                _dumps(user["address"]),
                _dumps(user["orders"]),
                position,
            )
        )
        for method_position, method in enumerate(user["payment_methods"].values()):
            details = {key: value for key, value in method.items() if key != "balance"}
            balance = method.get("balance")
            methods.append(
                (
                    method["id"],
                    user["user_id"],
                    method["source"],
                    _dumps(details),
                    None if balance is None else float(balance),
                    method_position,
                )
            )
    orders: list[tuple[Any, ...]] = []
    for position, order in enumerate(data["orders"].values()):
        extra = {key: value for key, value in order.items() if key not in _ORDER_CORE_FIELDS}
        orders.append(
            (
                order["order_id"],
                order["user_id"],
                order["status"],
                _dumps(order["address"]),
                _dumps(order["items"]),
                _dumps(order["fulfillments"]),
                _dumps(order["payment_history"]),
                _dumps(extra),
                position,
            )
        )
    return {"products": products, "items": items, "users": users, "payment_methods": methods, "orders": orders}


_INSERTS = {
    "products": "INSERT INTO products (product_id, name, position) VALUES (?, ?, ?)",
    "items": "INSERT INTO items (item_id, product_id, options, available, price, position) VALUES (?, ?, ?, ?, ?, ?)",
    "users": (
        "INSERT INTO users (user_id, first_name, last_name, email, address, order_ids, position) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    "payment_methods": (
        "INSERT INTO payment_methods (payment_method_id, user_id, source, details, balance, position) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    ),
    "orders": (
        "INSERT INTO orders (order_id, user_id, status, address, items, fulfillments, payment_history, extra, position) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
}


def build_retail_db(db_json: Path, out: Path) -> Path:
    """Build the SQLite retail database at ``out`` from tau2's ``db.json``; returns ``out``.

    Atomic: the database is written to a temporary file next to ``out`` and renamed over
    it, so a reader never sees a half-built file. An existing ``out`` is replaced.
    """
    db_json = Path(db_json)
    out = Path(out)
    try:
        raw = db_json.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the retail source: {exc}", source=str(db_json)) from exc
    try:
        rows = _source_rows(json.loads(raw))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"not a tau2 retail db.json (expected products/users/orders keyed by id): {exc!r}",
            source=str(db_json),
        ) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        with closing(sqlite3.connect(temp_path, isolation_level=None)) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN")
            for table in ("products", "items", "users", "payment_methods", "orders"):
                conn.executemany(_INSERTS[table], rows[table])
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("source_name", db_json.name),
                    ("source_sha256", hashlib.sha256(raw).hexdigest()),
                ],
            )
            conn.execute("COMMIT")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        os.replace(temp_path, out)
    except sqlite3.IntegrityError as exc:
        temp_path.unlink(missing_ok=True)
        raise ConfigError(f"the retail source has duplicate or dangling ids: {exc}", source=str(db_json)) from exc
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return out


def _connect(path: Path) -> sqlite3.Connection:
    # mode=rw: never let sqlite create an empty file where the database should be.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            f"not a tierflow retail database ({exc}); delete it to rebuild it from db.json", source=str(path)
        ) from exc
    if row is None or row[0] != str(SCHEMA_VERSION):
        found = None if row is None else row[0]
        raise ConfigError(
            f"retail database schema version {found}, expected {SCHEMA_VERSION}; "
            "delete the file to rebuild it from db.json",
            source=str(path),
        )


def open_retail_db(path: Path | None = None, *, source: Path | None = None) -> sqlite3.Connection:
    """Open the retail database, building it from ``source`` (default: the shared
    tau2 ``db.json``) when ``path`` (default: ``$TIERFLOW_HOME/retail/retail.sqlite``)
    does not exist yet.

    The connection is in autocommit mode (``isolation_level=None``); write tools manage
    their own transactions. Rows come back as ``sqlite3.Row``. The caller closes it.
    """
    target = Path(path) if path is not None else default_retail_db_path()
    if not target.exists():
        build_retail_db(Path(source) if source is not None else default_retail_source(), target)
    conn = _connect(target)
    try:
        _check_schema(conn, target)
    except BaseException:
        conn.close()
        raise
    return conn


def copy_retail_db(source_db: Path, out: Path) -> Path:
    """Copy a built retail database (consistently, through SQLite's backup API) to
    ``out``, e.g. a fresh database per eval task; returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        with closing(_connect(Path(source_db))) as src, closing(sqlite3.connect(temp_path)) as dst:
            _check_schema(src, Path(source_db))
            src.backup(dst)
        os.replace(temp_path, out)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return out


@dataclass(frozen=True)
class RetailDB:
    """A retail database file. Opens one connection per use, so it can be shared
    between threads (each thread gets its own connection)."""

    path: Path

    @classmethod
    def open(cls, path: Path | None = None, *, source: Path | None = None) -> RetailDB:
        """Ensure the database exists (building it if needed) and is current."""
        target = Path(path) if path is not None else default_retail_db_path()
        open_retail_db(target, source=source).close()
        return cls(target)

    def connect(self) -> sqlite3.Connection:
        """A new connection; the caller closes it. Usable as ``conn_factory``.

        Never builds: a database that vanished after ``open`` is an error, not a silent reset.
        """
        if not self.path.is_file():
            raise ConfigError("the retail database file is missing; open it with RetailDB.open()", source=str(self.path))
        conn = _connect(self.path)
        try:
            _check_schema(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    def snapshot(self) -> dict[str, Any]:
        with self.connection() as conn:
            return snapshot_state(conn)

    def state_hash(self) -> str:
        with self.connection() as conn:
            return state_hash(conn)


# --- row -> tau2-shaped record -------------------------------------------------------


def _payment_method_record(row: sqlite3.Row) -> dict[str, Any]:
    method: dict[str, Any] = json.loads(row["details"])
    if row["balance"] is not None:
        method["balance"] = row["balance"]
    return method


def _payment_methods(conn: sqlite3.Connection, user_id: str) -> dict[str, dict[str, Any]]:
    return {
        row["payment_method_id"]: _payment_method_record(row)
        for row in conn.execute(
            "SELECT payment_method_id, details, balance FROM payment_methods WHERE user_id = ? ORDER BY position",
            (user_id,),
        )
    }


def _user_record(row: sqlite3.Row, payment_methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "name": {"first_name": row["first_name"], "last_name": row["last_name"]},
        "address": json.loads(row["address"]),
        "email": row["email"],
        "payment_methods": payment_methods,
        "orders": json.loads(row["order_ids"]),
    }


def _order_record(row: sqlite3.Row) -> dict[str, Any]:
    record: dict[str, Any] = {
        "order_id": row["order_id"],
        "user_id": row["user_id"],
        "address": json.loads(row["address"]),
        "items": json.loads(row["items"]),
        "status": row["status"],
        "fulfillments": json.loads(row["fulfillments"]),
        "payment_history": json.loads(row["payment_history"]),
    }
    record.update(json.loads(row["extra"]))
    return record


def load_user(conn: sqlite3.Connection, user_id: str) -> dict[str, Any] | None:
    """The user as tau2 shows it (name, address, email, payment methods, order ids)."""
    row = conn.execute("SELECT * FROM users WHERE user_id = ?", (user_id,)).fetchone()
    return None if row is None else _user_record(row, _payment_methods(conn, user_id))


def load_order(conn: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else _order_record(row)


def load_product(conn: sqlite3.Connection, product_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT product_id, name FROM products WHERE product_id = ?", (product_id,)).fetchone()
    if row is None:
        return None
    variants = {
        item["item_id"]: {
            "item_id": item["item_id"],
            "options": json.loads(item["options"]),
            "available": bool(item["available"]),
            "price": item["price"],
        }
        for item in conn.execute(
            "SELECT item_id, options, available, price FROM items WHERE product_id = ? ORDER BY position",
            (product_id,),
        )
    }
    return {"name": row["name"], "product_id": row["product_id"], "variants": variants}


def load_item(conn: sqlite3.Connection, item_id: str) -> dict[str, Any] | None:
    """A variant item with the product it belongs to (``product_id``, ``name``)."""
    row = conn.execute(
        "SELECT items.item_id, items.product_id, items.options, items.available, items.price, products.name "
        "FROM items JOIN products ON products.product_id = items.product_id WHERE items.item_id = ?",
        (item_id,),
    ).fetchone()
    if row is None:
        return None
    return {
        "item_id": row["item_id"],
        "product_id": row["product_id"],
        "name": row["name"],
        "options": json.loads(row["options"]),
        "available": bool(row["available"]),
        "price": row["price"],
    }


# --- state comparison ------------------------------------------------------------------


def snapshot_state(conn: sqlite3.Connection) -> dict[str, Any]:
    """The mutable state, tau2-shaped: ``{"users": {id: user}, "orders": {id: order}}``.

    Products never change through the tools and applied idempotency keys are
    bookkeeping, so neither is part of the state.
    """
    methods_by_user: dict[str, dict[str, dict[str, Any]]] = {}
    for row in conn.execute("SELECT * FROM payment_methods ORDER BY user_id, position"):
        methods_by_user.setdefault(row["user_id"], {})[row["payment_method_id"]] = _payment_method_record(row)
    users = {
        row["user_id"]: _user_record(row, methods_by_user.get(row["user_id"], {}))
        for row in conn.execute("SELECT * FROM users ORDER BY position")
    }
    orders = {row["order_id"]: _order_record(row) for row in conn.execute("SELECT * FROM orders ORDER BY position")}
    return {"users": users, "orders": orders}


def state_hash(conn: sqlite3.Connection) -> str:
    """sha256 of the canonical JSON of :func:`snapshot_state` (sorted keys, no spaces)."""
    canonical = json.dumps(snapshot_state(conn), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
