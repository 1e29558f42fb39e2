"""Slot / span extraction: restaurant8k (Span-ConveRT JSON).

Each example is one user turn with zero or more labelled spans
(``people``, ``date``, ``time``, ``first_name``, ``last_name``). The format omits
``startIndex`` when it is 0, so a missing start means the span opens the utterance;
spans are end-exclusive character offsets, and the span text is cut from the utterance
here so graders compare strings while the offsets stay available.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ._files import existing_file, file_stem, read_json
from .cases import Case, Dataset, DatasetFormatError, DatasetSource, FrozenModel

__all__ = [
    "RESTAURANT8K_SLOTS",
    "SlotSpan",
    "SlotInputs",
    "SlotExpected",
    "SlotCase",
    "SlotDataset",
    "by_slot_set",
    "load_restaurant8k",
]

RESTAURANT8K_SLOTS: tuple[str, ...] = ("date", "time", "people", "first_name", "last_name")


class SlotSpan(FrozenModel):
    """One labelled value: ``text == utterance[start:end]``."""

    slot: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str

    @model_validator(mode="after")
    def _ordered(self) -> SlotSpan:
        if self.end < self.start:
            raise ValueError(f"span end {self.end} is before its start {self.start}")
        return self


class SlotInputs(FrozenModel):
    text: str
    # The slot(s) the system had just asked for: context that disambiguates "7" (people or time?).
    requested_slots: list[str] = Field(default_factory=list)


class SlotExpected(FrozenModel):
    spans: list[SlotSpan] = Field(default_factory=list)

    def slot_values(self) -> dict[str, list[str]]:
        """Gold values per slot (a list because a format may label one slot twice; none
        of restaurant8k's training rows do)."""
        values: dict[str, list[str]] = {}
        for span in self.spans:
            values.setdefault(span.slot, []).append(span.text)
        return values


SlotCase = Case[SlotInputs, SlotExpected]
SlotDataset = Dataset[SlotInputs, SlotExpected]


def by_slot_set(case: SlotCase) -> tuple[str, ...]:
    """Stratum for ``Dataset.sample``: which slots the utterance carries (empty for none)."""
    return tuple(sorted({span.slot for span in case.expected.spans}))


def _span(path: Path, row: int, text: str, label: Mapping[str, Any]) -> SlotSpan:
    slot = label.get("slot")
    value_span = label.get("valueSpan")
    if not isinstance(slot, str) or not isinstance(value_span, Mapping) or "endIndex" not in value_span:
        raise DatasetFormatError(path, f"label must be {{slot, valueSpan: {{startIndex?, endIndex}}}}, got {label!r}", row=row)
    start = int(value_span.get("startIndex", 0))  # omitted by the format when 0
    end = int(value_span["endIndex"])
    if not 0 <= start <= end <= len(text):
        raise DatasetFormatError(
            path, f"span [{start}, {end}) of slot {slot!r} is outside the {len(text)}-character utterance", row=row
        )
    return SlotSpan(slot=slot, start=start, end=end, text=text[start:end])


def load_restaurant8k(path: str | Path, *, limit: int | None = None, seed: int = 0) -> SlotDataset:
    """A restaurant8k JSON list (``train_0.json``, ``test.json``, ...) as slot cases."""
    json_path = existing_file(path, "restaurant8k JSON")
    examples = read_json(json_path)
    if not isinstance(examples, list):
        raise DatasetFormatError(json_path, "expected a JSON list of examples")
    stem = file_stem(json_path)
    cases: list[SlotCase] = []
    seen_slots: set[str] = set()
    for row, example in enumerate(examples):
        user_input = example.get("userInput") if isinstance(example, dict) else None
        if not isinstance(user_input, dict) or not isinstance(user_input.get("text"), str):
            raise DatasetFormatError(json_path, "example lacks userInput.text", row=row)
        text: str = user_input["text"]
        context = example.get("context") or {}
        requested = list(context.get("requestedSlots") or [])
        spans = [_span(json_path, row, text, label) for label in example.get("labels") or []]
        seen_slots.update(span.slot for span in spans)
        cases.append(
            SlotCase(
                id=f"restaurant8k-{stem}-{row:05d}",
                inputs=SlotInputs(text=text, requested_slots=requested),
                expected=SlotExpected(spans=spans),
                metadata={"row": row},
            )
        )
    slots = [*RESTAURANT8K_SLOTS, *sorted(seen_slots - set(RESTAURANT8K_SLOTS))]
    dataset = SlotDataset(
        name="restaurant8k",
        cases=cases,
        source=DatasetSource(path=str(json_path), format="restaurant8k-json"),
        metadata={"slots": slots, "split": stem},
    )
    return dataset.sample(limit, seed, stratify=by_slot_set)
