"""Internal (the public surface is `import tierflow`).

Retail business data for the order agent: tau2-bench's retail database in SQLite and
its 16 tools (same names and arguments as tau2), as plain functions (`reads`, `writes`), a
registry that calls them by name (`call_retail_tool`) and LangChain tools.

Nothing is opened at import: call ``open_retail_db()`` / ``RetailDB.open()``.
"""

from __future__ import annotations

from tierflow.tools.retail.db import (
    RetailDB,
    build_retail_db,
    copy_retail_db,
    default_retail_db_path,
    default_retail_source,
    open_retail_db,
    snapshot_state,
    state_hash,
)
from tierflow.tools.retail.errors import RetailErrorKind, RetailToolError
from tierflow.tools.retail.tools import (
    IDEMPOTENCY_CONFIG_KEY,
    RETAIL_TOOLS,
    WRITE_TOOL_NAMES,
    ToolSpec,
    call_retail_tool,
    retail_tools,
)

__all__ = [
    "IDEMPOTENCY_CONFIG_KEY",
    "RETAIL_TOOLS",
    "WRITE_TOOL_NAMES",
    "RetailDB",
    "RetailErrorKind",
    "RetailToolError",
    "ToolSpec",
    "build_retail_db",
    "call_retail_tool",
    "copy_retail_db",
    "default_retail_db_path",
    "default_retail_source",
    "open_retail_db",
    "retail_tools",
    "snapshot_state",
    "state_hash",
]
