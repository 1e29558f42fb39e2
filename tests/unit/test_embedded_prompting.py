"""The embedded provider's pure parts: the output bound a schema implies, the compact tool
prompt, and the classifier's candidate shortlist and plausibility check."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from tierflow.agents.spec import PlanItem, StepInput
from tierflow.agents.workers import classifier, label_model
from tierflow.graphs.ticket_triage import TicketEntities
from tierflow.model_tiers.providers.embedded import grammar_for, max_output_chars, tool_call_schema, tools_prompt


def _params(model: type[BaseModel]) -> dict:
    return model.model_json_schema()


def test_a_label_schema_is_bounded_by_its_longest_label() -> None:
    schema = _params(label_model("L", ["a", "bbbbbbbbbb"]))
    bound = max_output_chars(schema)
    assert bound is not None
    longest = json.dumps({"label": "bbbbbbbbbb", "confidence": 0.123456789012345678})
    assert len(longest) <= bound < 200


def test_strings_without_max_length_are_unbounded_and_with_one_bounded() -> None:
    class Free(BaseModel):
        text: str

    class Capped(BaseModel):
        text: str | None = Field(default=None, max_length=10)
        n: int = 0
        flags: list[bool] = Field(default_factory=list, max_length=3)
        kind: Literal["x", "yy"] = "x"

    assert max_output_chars(_params(Free)) is None
    capped = max_output_chars(_params(Capped))
    assert capped is not None
    worst = json.dumps({"text": "a" * 10, "n": -10**18, "flags": [False] * 3, "kind": "yy"})
    assert len(worst) <= capped
    # The extract step's entities are bounded too, so a runaway string stops early.
    entities = max_output_chars(_params(TicketEntities))
    assert entities is not None and entities < 500


def test_long_enums_are_not_spelled_out_in_the_tool_prompt() -> None:
    labels = [f"label_{i}" for i in range(40)]
    tool = {"type": "function", "function": {"name": "Pick", "description": "pick one", "parameters": _params(label_model("Pick", labels))}}
    text = tools_prompt([tool], "Pick", False)
    assert "label_39" not in text and "one of 40 allowed values" in text
    # ...while the grammar's schema still lists every label.
    assert "label_39" in json.dumps(tool_call_schema([tool], "Pick", False))


def _input(request: str) -> StepInput:
    return StepInput(request=request, results={}, item=PlanItem(id="0:c", step="c"), resources={})


DESCRIPTIONS = {
    "lost_card": "The customer lost their card or it was stolen.",
    "card_arrival": "The customer's new card has not been delivered yet.",
    "exchange_rate": "The customer asks which currency exchange rate applies.",
    "top_up": "The customer wants to add money to the account balance.",
    "other": "Not a banking request.",
}


def test_the_prompt_lists_the_most_similar_labels_first_and_names_the_fallback() -> None:
    spec = classifier("c", labels=tuple(DESCRIPTIONS), instructions="x", descriptions=DESCRIPTIONS, shortlist=2, fallback_label="other")
    assert spec.prompt is not None
    text = spec.prompt(_input("I lost my card, someone stole it"))
    listed = [line[2:].split(":", 1)[0] for line in text.splitlines() if line.startswith("- ")]
    assert listed[0] == "lost_card" and len(listed) == 2 and "other" not in listed
    assert "The customer lost their card" in text and "answer 'other'" in text


def test_an_implausible_label_fails_a_soft_check_and_a_plausible_one_passes() -> None:
    spec = classifier("c", labels=tuple(DESCRIPTIONS), instructions="x", descriptions=DESCRIPTIONS, plausible_rank=2)
    check = next(c for c in spec.checks if c.soft)
    model = spec.output_model
    assert model is not None
    inp = _input("My card was stolen yesterday, I lost it")
    assert check(model(label="lost_card", confidence=0.9), inp) is None
    reason = check(model(label="exchange_rate", confidence=0.9), inp)
    assert reason is not None and "lost_card" in reason and "unlikely" in reason


def test_copied_fields_require_every_field_in_the_schema_and_read_null_words_as_absent() -> None:
    from tierflow.agents.fields import CopiedFields, repeated_value

    class Slots(CopiedFields):
        day: str | None = None
        name: str | None = None

    assert Slots.model_json_schema()["required"] == ["day", "name"]
    assert Slots.model_validate({"day": "null", "name": " None "}) == Slots()
    assert Slots.model_validate({}) == Slots()  # a human may give only some fields
    assert repeated_value({"a": "EUR", "b": None, "c": " eur"}) == ("c", "a", " eur")
    assert repeated_value({"a": "EUR", "b": "USD", "n": 250}) is None


@pytest.mark.parametrize(
    "field",
    [{"not": {"type": "string"}}, {"type": "string", "pattern": "(?i)abc"}],
)
def test_a_schema_the_grammar_cannot_express_degrades_to_an_unconstrained_decode(field: dict) -> None:
    """llama.cpp's converter asserts on these; the call must still run (and be validated)."""
    assert grammar_for({"type": "object", "properties": {"x": field}}) is None
    assert grammar_for({"type": "object", "properties": {"x": {"type": "string"}}}) is not None
