"""`CopiedFields`: the base of extraction schemas whose fields are text copied from the input.

Small models answer such a schema better when every field must be stated: in the JSON
schema a model answers under, each field is required (null when the input does not give
it), so the model weighs each one instead of stopping at the first it notices (Qwen2.5-1.5B
left the sample ticket's amount out while the fields were optional). Validation keeps the
defaults, so a human's edit may give only some fields. A null written as a word ("null",
"none"), as small models do under a string grammar, is read as absent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["CopiedFields", "NULL_WORDS"]

NULL_WORDS = frozenset({"", "null", "none", "n/a", "unknown"})


def _require_every_field(schema: dict[str, Any], _cls: type[BaseModel]) -> None:
    schema["required"] = list(schema.get("properties", {}))


class CopiedFields(BaseModel):
    model_config = ConfigDict(json_schema_extra=_require_every_field)

    @field_validator("*", mode="before")
    @classmethod
    def _null_words_are_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().casefold() in NULL_WORDS else value
