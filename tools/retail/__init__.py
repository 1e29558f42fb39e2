"""Retail business data for the order agent: tau2-bench's retail database in SQLite and
its 16 tools (same names and arguments as tau2), as plain functions, a registry and
LangChain tools.

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
from tierflow.tools.retail.reads import (
    calculate,
    find_user_id_by_email,
    find_user_id_by_name_zip,
    get_item_details,
    get_order_details,
    get_product_details,
    get_user_details,
    list_all_product_types,
    transfer_to_human_agents,
)
from tierflow.tools.retail.tools import (
    IDEMPOTENCY_CONFIG_KEY,
    RETAIL_TOOLS,
    WRITE_TOOL_NAMES,
    ToolSpec,
    call_retail_tool,
    retail_tools,
)
from tierflow.tools.retail.writes import (
    STATUS_CANCELLED,
    STATUS_EXCHANGE_REQUESTED,
    STATUS_ITEMS_MODIFIED,
    STATUS_RETURN_REQUESTED,
    cancel_pending_order,
    exchange_delivered_order_items,
    modify_pending_order_address,
    modify_pending_order_items,
    modify_pending_order_payment,
    modify_user_address,
    return_delivered_order_items,
)

__all__ = [
    "IDEMPOTENCY_CONFIG_KEY",
    "RETAIL_TOOLS",
    "STATUS_CANCELLED",
    "STATUS_EXCHANGE_REQUESTED",
    "STATUS_ITEMS_MODIFIED",
    "STATUS_RETURN_REQUESTED",
    "WRITE_TOOL_NAMES",
    "RetailDB",
    "RetailErrorKind",
    "RetailToolError",
    "ToolSpec",
    "build_retail_db",
    "calculate",
    "call_retail_tool",
    "cancel_pending_order",
    "copy_retail_db",
    "default_retail_db_path",
    "default_retail_source",
    "exchange_delivered_order_items",
    "find_user_id_by_email",
    "find_user_id_by_name_zip",
    "get_item_details",
    "get_order_details",
    "get_product_details",
    "get_user_details",
    "list_all_product_types",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "modify_user_address",
    "open_retail_db",
    "retail_tools",
    "return_delivered_order_items",
    "snapshot_state",
    "state_hash",
    "transfer_to_human_agents",
]
