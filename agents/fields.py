"""`CopiedFields`: the base of extraction schemas whose fields are text copied from the input.

Small models answer such a schema better when every field must be stated: in the JSON
schema a model answers under, each field is required (null when the input does not give
it), so the model weighs each one instead of stopping at the first it notices (Qwen2.5-1.5B
left the sample ticket's amount out while the fields were optional). Validation keeps the
defaults, so a human's edit may give only some fields. A null written as a word ("null",
"none"), as small models do under a string grammar, is read as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["CopiedFields", "NULL_WORDS", "repeated_value"]

NULL_WORDS = frozenset({"", "null", "none", "n/a", "unknown"})


def _require_every_field(schema: dict[str, Any], _cls: type[BaseModel]) -> None:
    schema["required"] = list(schema.get("properties", {}))


class CopiedFields(BaseModel):
    model_config = ConfigDict(json_schema_extra=_require_every_field)

    @field_validator("*", mode="before")
    @classmethod
    def _null_words_are_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().casefold() in NULL_WORDS else value


def repeated_value(values: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(field, earlier field, text) for the first text given to two different fields.

    Small models fill several fields with one value from the input (card = currency =
    "EUR"; from_currency = to_currency = "250"): a text that answers two different fields
    answers at most one of them.
    """
    seen: dict[str, str] = {}
    for name, value in values.items():
        if not isinstance(value, str) or not value.strip():
            continue
        key = value.strip().casefold()
        if key in seen:
            return name, seen[key], value
        seen[key] = name
    return None
