"""The PostgreSQL the scale-out tests use: where it is, and a check that it answers.

CI starts a real server with `.ci/postgres.sh` (Debian's package, loopback only) and the
tests read its DSN from `TIERFLOW_TEST_PG_DSN`; the default is what that script creates.
A missing server is a failure that says how to start one, never a skip.
"""

from __future__ import annotations

import os

import psycopg
import pytest
from langgraph.checkpoint.postgres import PostgresSaver

__all__ = ["DSN_ENV_VAR", "DEFAULT_DSN", "pg_dsn", "require_postgres"]

DSN_ENV_VAR = "TIERFLOW_TEST_PG_DSN"
DEFAULT_DSN = "postgresql://tierflow:tierflow@127.0.0.1:5432/tierflow_test"


def pg_dsn() -> str:
    return os.environ.get(DSN_ENV_VAR, "").strip() or DEFAULT_DSN


def require_postgres() -> str:
    """The DSN of a PostgreSQL that accepts connections, with LangGraph's tables set up.

    Fails the calling test (never skips it) when no server answers."""
    dsn = pg_dsn()
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as err:
        pytest.fail(
            f"no PostgreSQL answers at {DSN_ENV_VAR}={dsn!r} ({err}). Start one with `.ci/postgres.sh` "
            f"(installs and starts Debian's server on loopback) or point {DSN_ENV_VAR} at another.",
            pytrace=False,
        )
    with PostgresSaver.from_conn_string(dsn) as saver:
        saver.setup()  # idempotent: LangGraph's own migrations
    return dsn
