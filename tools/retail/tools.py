"""The retail tools as a registry and as LangChain tools an LLM can bind.

``RETAIL_TOOLS`` maps tau2-bench's tool names to a ``ToolSpec`` (args model, whether it
writes, the function). ``call_retail_tool`` runs one by name with a dict of arguments,
as a gold action or a model's tool call gives them. ``retail_tools`` wraps them as
``StructuredTool``s that open a connection per call, so one list can serve many threads.

Idempotency for LLM tool calls: the caller passes a unique key per write call in the
run config, ``config={"configurable": {"retail_idempotency_key": "<run>:<step>:<call>"}}``;
the model never sees or chooses it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, ValidationError

from tierflow.tools.retail import reads, writes
from tierflow.tools.retail.errors import RetailToolError
from tierflow.tools.retail.schemas import parse_args

__all__ = [
    "IDEMPOTENCY_CONFIG_KEY",
    "RETAIL_TOOLS",
    "WRITE_TOOL_NAMES",
    "ToolSpec",
    "call_retail_tool",
    "retail_tools",
]

IDEMPOTENCY_CONFIG_KEY = "retail_idempotency_key"


@dataclass(frozen=True)
class ToolSpec:
    """One retail tool: tau2's name, its argument model, whether it changes the database,
    and the function ``function(conn, args[, idempotency_key=...])``."""

    name: str
    description: str
    args_model: type[BaseModel]
    is_write: bool
    function: Callable[..., Any]

    @classmethod
    def of(cls, function: Callable[..., Any], description: str, *, is_write: bool = False) -> ToolSpec:
        """The spec of a tool function: its name is tau2's, its `args` annotation the model."""
        args_model = get_type_hints(function)["args"]
        return cls(function.__name__, description, args_model, is_write, function)


_CONFIRM = " Only after listing the action details to the user and getting explicit confirmation (yes)."

# (function, what the model is told about it); a write's description ends with the
# confirmation rule of tau2's policy.
_READS: tuple[tuple[Callable[..., Any], str], ...] = (
    (
        reads.find_user_id_by_email,
        "Find the user id by email. Use it to authenticate the user at the start of the conversation.",
    ),
    (
        reads.find_user_id_by_name_zip,
        "Find the user id by first name, last name and zip code. Use it to authenticate the user when "
        "they cannot give their email.",
    ),
    (
        reads.get_user_details,
        "Get the details of a user: email, default address, payment methods (gift card balances) and order ids.",
    ),
    (
        reads.get_order_details,
        "Get the status and details of an order: address, items, status, fulfillments (tracking) and payment history.",
    ),
    (
        reads.get_product_details,
        "Get the inventory details of a product type: its variant items with options, availability and price. "
        "Product ids and item ids are different things.",
    ),
    (
        reads.get_item_details,
        "Get the details of one variant item: options, availability, price and the product it belongs to.",
    ),
    (
        reads.list_all_product_types,
        "List the name and product id of every product type in the store.",
    ),
    (
        reads.calculate,
        "Calculate the result of an arithmetic expression (numbers, + - * /, parentheses), rounded to 2 decimals.",
    ),
    (
        reads.transfer_to_human_agents,
        "Transfer the user to a human agent, with a summary of the user's issue. Only if the request cannot be "
        "handled within the scope of your actions.",
    ),
)
_WRITES: tuple[tuple[Callable[..., Any], str], ...] = (
    (
        writes.cancel_pending_order,
        "Cancel a pending order. The reason must be 'no longer needed' or 'ordered by mistake'. The order becomes "
        "'cancelled'; the total is refunded to the original payment method, immediately if it is a gift card, "
        "otherwise in 5 to 7 business days.",
    ),
    (
        writes.modify_pending_order_address,
        "Modify the shipping address of a pending order.",
    ),
    (
        writes.modify_pending_order_items,
        "Modify items of a pending order to new items of the same product type but different options; the "
        "new items must be available. A payment method pays or receives the price difference (a gift card "
        "must cover it). Can only be called once per order: the order becomes 'pending (item modified)' "
        "and can no longer be modified or cancelled, so collect all items to change first.",
    ),
    (
        writes.modify_pending_order_payment,
        "Modify the payment method of a pending order to a single other payment method of the user; a gift "
        "card must have enough balance for the total. The original payment method is refunded, immediately "
        "if it is a gift card, otherwise in 5 to 7 business days.",
    ),
    (
        writes.modify_user_address,
        "Modify the default address of a user.",
    ),
    (
        writes.return_delivered_order_items,
        "Return some items of a delivered order. The refund goes to the original payment method or an existing "
        "gift card. The order becomes 'return requested' and the user receives an email about how to return "
        "the items.",
    ),
    (
        writes.exchange_delivered_order_items,
        "Exchange items of a delivered order to new items of the same product type but different options; the "
        "new items must be available. A payment method pays or receives the price difference (a gift card "
        "must cover it). Can only be done once per order: the order becomes 'exchange requested', so collect "
        "all items to exchange first.",
    ),
)
_SPECS = (
    *(ToolSpec.of(function, description) for function, description in _READS),
    *(ToolSpec.of(function, description + _CONFIRM, is_write=True) for function, description in _WRITES),
)

RETAIL_TOOLS: dict[str, ToolSpec] = {spec.name: spec for spec in _SPECS}
WRITE_TOOL_NAMES: frozenset[str] = frozenset(spec.name for spec in _SPECS if spec.is_write)


def call_retail_tool(
    conn: sqlite3.Connection,
    name: str,
    arguments: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
) -> Any:
    """Run the retail tool ``name`` with tau2-style ``arguments``.

    ``idempotency_key`` applies to write tools; reads are idempotent by nature and ignore it.
    Raises ``RetailToolError`` for an unknown tool, invalid arguments or a policy violation.
    """
    spec = RETAIL_TOOLS.get(name)
    if spec is None:
        raise RetailToolError(name, f"unknown retail tool; the tools are: {', '.join(RETAIL_TOOLS)}")
    if not isinstance(arguments, Mapping):
        raise RetailToolError(name, f"arguments must be a JSON object, got {type(arguments).__name__}")
    args = parse_args(spec.args_model, name, dict(arguments))
    if spec.is_write:
        return spec.function(conn, args, idempotency_key=idempotency_key)
    return spec.function(conn, args)


def _as_text(result: Any) -> str:
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def _validation_message(error: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in error.errors())
    return f"invalid arguments ({problems}); fix them and call the tool again"


def _langchain_tool(
    spec: ToolSpec, conn_factory: Callable[[], sqlite3.Connection], errors_as_messages: bool
) -> StructuredTool:
    def run(config: RunnableConfig, **arguments: Any) -> tuple[str, Any]:
        key = (config.get("configurable") or {}).get(IDEMPOTENCY_CONFIG_KEY) if spec.is_write else None
        conn = conn_factory()
        try:
            result = call_retail_tool(conn, spec.name, arguments, idempotency_key=key)
        except RetailToolError as exc:
            if errors_as_messages:
                raise ToolException(str(exc)) from exc
            raise
        finally:
            conn.close()
        return _as_text(result), result

    return StructuredTool.from_function(
        func=run,
        name=spec.name,
        description=spec.description,
        args_schema=spec.args_model,
        response_format="content_and_artifact",
        handle_tool_error=errors_as_messages,
        handle_validation_error=_validation_message if errors_as_messages else False,
    )


def retail_tools(
    conn_factory: Callable[[], sqlite3.Connection], *, errors_as_messages: bool = False
) -> list[BaseTool]:
    """The 16 retail tools as LangChain ``StructuredTool``s (tau2 names and arguments).

    ``conn_factory`` opens a connection per call (e.g. ``RetailDB(path).connect``); the
    tool closes it. The tool message content is the result as JSON text, the artifact the
    result itself. By default a refused call raises ``RetailToolError`` (or pydantic's
    ``ValidationError``) so the verifier sees it; with ``errors_as_messages=True`` the
    error text becomes the tool message (status ``error``), as tau2 shows errors to the agent.
    """
    return [_langchain_tool(spec, conn_factory, errors_as_messages) for spec in _SPECS]
