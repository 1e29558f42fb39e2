"""Argument models of the retail tools: tau2-bench's exact tool and argument names.

One pydantic model per tool. The same model validates a direct Python call, a registry
call and an LLM tool call (it is the LangChain ``args_schema``), so the JSON schema an
LLM sees and the checks the tool applies cannot drift apart. Field descriptions follow
the wording of tau2's retail policy.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from tierflow.tools.retail.errors import RetailToolError

__all__ = [
    "CalculateArgs",
    "CancelPendingOrderArgs",
    "ExchangeDeliveredOrderItemsArgs",
    "FindUserIdByEmailArgs",
    "FindUserIdByNameZipArgs",
    "GetItemDetailsArgs",
    "GetOrderDetailsArgs",
    "GetProductDetailsArgs",
    "GetUserDetailsArgs",
    "ListAllProductTypesArgs",
    "ModifyPendingOrderAddressArgs",
    "ModifyPendingOrderItemsArgs",
    "ModifyPendingOrderPaymentArgs",
    "ModifyUserAddressArgs",
    "ReturnDeliveredOrderItemsArgs",
    "TransferToHumanAgentsArgs",
    "CancelReason",
    "parse_args",
]

NonEmpty = Annotated[str, Field(min_length=1)]
UserId = Annotated[str, Field(min_length=1, description="The user id, such as 'sara_doe_496'.")]
def _order_id_with_hash(value: Any) -> Any:
    # Both embedded models wrote "#W5918442" as "W5918442" on every attempt; the id is the
    # same, so the tool reads it with its prefix rather than calling it unknown.
    if isinstance(value, str) and re.fullmatch(r"W\d{7}", value.strip()):
        return f"#{value.strip()}"
    return value


OrderId = Annotated[
    str,
    BeforeValidator(_order_id_with_hash),
    Field(min_length=1, description="The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning."),
]
ItemId = Annotated[str, Field(min_length=1, description="An item (variant) id, such as '6086499569'.")]
PaymentMethodId = Annotated[
    str,
    Field(
        min_length=1,
        description="The id of one of the user's payment methods, such as 'gift_card_0000000' or 'credit_card_0000000'.",
    ),
]
CancelReason = Literal["no longer needed", "ordered by mistake"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FindUserIdByEmailArgs(_Args):
    email: NonEmpty = Field(description="The email of the user, such as 'something@example.com'.")


class FindUserIdByNameZipArgs(_Args):
    first_name: NonEmpty = Field(description="The first name of the customer, such as 'John'.")
    last_name: NonEmpty = Field(description="The last name of the customer, such as 'Doe'.")
    zip: NonEmpty = Field(description="The zip code of the customer, such as '12345'.")


class GetUserDetailsArgs(_Args):
    user_id: UserId


class GetOrderDetailsArgs(_Args):
    order_id: OrderId


class GetProductDetailsArgs(_Args):
    product_id: NonEmpty = Field(
        description="The product id, such as '6086499569'. Product ids and item ids are different things."
    )


class GetItemDetailsArgs(_Args):
    item_id: ItemId


class ListAllProductTypesArgs(_Args):
    pass


class CalculateArgs(_Args):
    expression: str = Field(
        min_length=1,
        max_length=500,
        description="The arithmetic expression to calculate, such as '2 + 2'. It may contain numbers, "
        "operators (+, -, *, /), parentheses and spaces.",
    )


class TransferToHumanAgentsArgs(_Args):
    summary: NonEmpty = Field(description="A summary of the user's issue.")


class CancelPendingOrderArgs(_Args):
    order_id: OrderId
    reason: CancelReason = Field(
        description="The reason for cancellation, which should be either 'no longer needed' or 'ordered by mistake'."
    )


class _AddressArgs(_Args):
    address1: NonEmpty = Field(description="The first line of the address, such as '123 Main St'.")
    address2: str = Field(description="The second line of the address, such as 'Apt 1' or ''.")
    city: NonEmpty = Field(description="The city, such as 'San Francisco'.")
    state: NonEmpty = Field(description="The state, such as 'CA'.")
    country: NonEmpty = Field(description="The country, such as 'USA'.")
    zip: NonEmpty = Field(description="The zip code, such as '12345'.")

    def address(self) -> dict[str, str]:
        """The address in tau2's field order."""
        return {
            "address1": self.address1,
            "address2": self.address2,
            "city": self.city,
            "country": self.country,
            "state": self.state,
            "zip": self.zip,
        }


class ModifyPendingOrderAddressArgs(_AddressArgs):
    order_id: OrderId


class ModifyUserAddressArgs(_AddressArgs):
    user_id: UserId


class ModifyPendingOrderPaymentArgs(_Args):
    order_id: OrderId
    payment_method_id: PaymentMethodId


class _ItemSwapArgs(_Args):
    order_id: OrderId
    item_ids: list[ItemId] = Field(
        min_length=1, description="The item ids to be changed, each such as '1008292230'. There could be duplicate items."
    )
    new_item_ids: list[ItemId] = Field(
        min_length=1,
        description="The new item ids, each such as '1008292230', in the same order as item_ids; each must be "
        "an available variant of the same product as the item it replaces.",
    )
    payment_method_id: PaymentMethodId


class ModifyPendingOrderItemsArgs(_ItemSwapArgs):
    pass


class ExchangeDeliveredOrderItemsArgs(_ItemSwapArgs):
    pass


class ReturnDeliveredOrderItemsArgs(_Args):
    order_id: OrderId
    item_ids: list[ItemId] = Field(
        min_length=1, description="The item ids to be returned, each such as '1008292230'. There could be duplicate items."
    )
    payment_method_id: PaymentMethodId = Field(
        description="The payment method id to receive the refund: the order's original payment method or "
        "one of the user's existing gift cards."
    )


ArgsT = TypeVar("ArgsT", bound=BaseModel)


def parse_args(model: type[ArgsT], tool: str, values: dict[str, Any]) -> ArgsT:
    """Validate ``values`` with ``model``; a ``RetailToolError`` says which field is wrong."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(arguments)'}: {error['msg']}" for error in exc.errors()
        )
        expected = ", ".join(model.model_fields) or "no arguments"
        raise RetailToolError(tool, f"invalid arguments ({problems}); expected: {expected}") from exc
