"""slot_extraction: a restaurant booking request -> the slots date, time, people, first_name
and last_name (as in restaurant8k), each a span of the message.

    extract (slm, local_only) -> verify (spans, people > 0, time parses) -> responder

Names are personal data, so the step is `local_only`: it never runs on a non-local tier,
whatever the ladder says. Slots the message does not give must be absent, not invented.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from tierflow.agents.fields import CopiedFields
from tierflow.agents.spec import Check, StepInput
from tierflow.agents.workers import default_plan, extractor
from tierflow.graphs.builder import Workflow

__all__ = ["WORKFLOW", "graph", "build", "BookingSlots", "SLOTS", "find_span", "parse_people", "parse_time", "is_time_expression"]

SLOTS = ("date", "time", "people", "first_name", "last_name")

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
        ]
    )
}
_NUMBER_WORDS.update({"a couple": 2, "couple": 2, "a dozen": 12, "dozen": 12, "thirty": 30, "forty": 40, "fifty": 50})


# A slot is a few words of the message; the grammar enforces bounds up to 32 characters.
SLOT_MAX_CHARS = 32


class BookingSlots(CopiedFields):
    """Each slot copied exactly as written in the message, or null when it is not given."""

    date: str | None = Field(
        default=None, max_length=SLOT_MAX_CHARS, description="the day of the booking as written, e.g. 'next Friday', '3rd May'"
    )
    time: str | None = Field(default=None, max_length=SLOT_MAX_CHARS, description="the time as written, e.g. '7pm', '19:30', 'noon'")
    people: str | None = Field(default=None, max_length=SLOT_MAX_CHARS, description="the party size as written, e.g. '4', 'six people'")
    first_name: str | None = Field(default=None, max_length=SLOT_MAX_CHARS, description="the guest's first name as written")
    last_name: str | None = Field(default=None, max_length=SLOT_MAX_CHARS, description="the guest's last name as written")


def find_span(text: str, value: str) -> tuple[int, int] | None:
    """Offsets of `value` in `text` (case-insensitive, surrounding punctuation ignored)."""
    needle = value.strip().strip(".,!?;:\"'").strip()
    if not needle:
        return None
    start = text.casefold().find(needle.casefold())
    return (start, start + len(needle)) if start >= 0 else None


# Words that stand for two people in a listed party ("me and my parents").
_PAIRS = ("twins", "parents", "grandparents", "kids", "children", "sons", "daughters")
_PERSON = re.compile(
    r"\b(me|myself|i|my|our|his|her|their|the|a|wife|husband|partner|friend|son|daughter|child|kid|mom|mum|"
    r"dad|mother|father|brother|sister|man|woman|lady|boss|colleague|twins|parents|family)\b"
)


def parse_people(value: str) -> int | None:
    """The party size in a span: digits or number words, summed ('5 adults and 1 child' -> 6),
    else the members listed ('me, my wife and our son' -> 3). None when it gives no count."""
    text = value.casefold()
    total = sum(int(n) for n in re.findall(r"\d+", text))
    for word, n in sorted(_NUMBER_WORDS.items(), key=lambda kv: -len(kv[0])):
        hits = len(re.findall(rf"\b{word}\b", text))
        if hits:
            total += n * hits
            text = re.sub(rf"\b{word}\b", " ", text)
    if total:
        return total
    if re.search(r"\b(few|some|several|many|group)\b", text):
        return None
    members = [p for p in re.split(r",|&|\band\b|\bplus\b|\bwith\b", text) if p.strip()]
    if not members or not all(_PERSON.search(p) for p in members):
        return None
    return len(members) + sum(1 for p in members for w in _PAIRS if re.search(rf"\b{w}\b", p))


_TIME_WORDS = {"noon": (12, 0), "midday": (12, 0), "midnight": (0, 0)}
_HOUR_WORD = {w: i for w, i in _NUMBER_WORDS.items() if 1 <= i <= 23 and " " not in w}
# A span naming a month or an ordinal day is a date, whatever numbers it holds.
_DATE_WORDS = re.compile(
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b|\b\d{1,2}(st|nd|rd|th)\b"
)
# Relative times are times too ("in an hour", "now"), though they have no clock value.
_RELATIVE_TIME = re.compile(
    r"\bnow\b|\bin (an|half an|a half|\d+|a few|\w+) (hours?|minutes?|mins?)\b|\b(minutes?|hours?) (before|after|from)\b"
)


def parse_time(value: str) -> tuple[int, int] | None:
    """(hour, minute) of a time span, or None when it is not a time ('7pm', '19:30', 'half past 8')."""
    text = value.casefold().strip()
    for word, hm in _TIME_WORDS.items():
        if word in text:
            return hm
    for word, hour in _HOUR_WORD.items():
        text = re.sub(rf"\b{word}\b", str(hour), text)
    text = text.replace("o'clock", "").replace("oclock", "")
    m = re.search(r"\b(half|quarter)\s+(past|to)\s+(\d{1,2})\b", text)
    if m:
        hour = int(m.group(3)) % 24
        minute = 30 if m.group(1) == "half" else 15
        return (hour, minute) if m.group(2) == "past" else ((hour - 1) % 24, 60 - minute)
    if _DATE_WORDS.search(text):
        return None
    m = re.search(r"\b(\d{1,2})(?:[:.]?(\d{2}))?\s*(a\.?m\.?|p\.?m\.?)?(?![\d])(?!\s*(?:st|nd|rd|th)\b)", text)
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if m.group(3) and m.group(3).startswith("p") and hour < 12:
        hour += 12
    if hour > 23 or minute > 59:
        return None
    return hour, minute


def _spans_of_message(value: BookingSlots, inp: StepInput) -> str | None:
    for slot in SLOTS:
        v = getattr(value, slot)
        if v is not None and find_span(inp.request, v) is None:
            return f"{slot}='{v}' is not a span of the message; copy it exactly as written, or leave it null"
    return None


def _people_positive(value: BookingSlots, _: StepInput) -> str | None:
    if value.people is None:
        return None
    n = parse_people(value.people)
    return None if n and n > 0 else f"people='{value.people}' does not give a positive number of guests"


def is_time_expression(value: str) -> bool:
    return parse_time(value) is not None or _RELATIVE_TIME.search(value.casefold()) is not None


def _time_parses(value: BookingSlots, _: StepInput) -> str | None:
    if value.time is None or is_time_expression(value.time):
        return None
    return f"time='{value.time}' is not a time of day (e.g. 7pm, 19:30, noon)"


def _finalize(state: Mapping[str, Any], _resources: Mapping[str, Any]) -> dict[str, Any]:
    slots = next((v for k, v in (state.get("results") or {}).items() if k.endswith(":extract")), None) or {}
    request = state.get("request", "")
    spans = {}
    for slot in SLOTS:
        value = slots.get(slot)
        where = find_span(request, value) if value else None
        if where is not None:
            spans[slot] = {"text": request[where[0] : where[1]], "start": where[0], "end": where[1]}
    people = parse_people(slots["people"]) if slots.get("people") else None
    time = parse_time(slots["time"]) if slots.get("time") else None
    return {
        "slots": spans,
        "people_count": people,
        "time_24h": f"{time[0]:02d}:{time[1]:02d}" if time else None,
        "decided_by": state.get("decided_by", {}),
        "failure": state.get("failure"),
    }


WORKFLOW = Workflow(
    name="slot_extraction",
    description=__doc__ or "",
    steps=(
        extractor(
            "extract",
            schema=BookingSlots,
            instructions=(
                "You read restaurant booking requests. Copy each slot (date, time, people, first_name, "
                "last_name) exactly as it is written in the message. A slot the message does not give is null.\n"
                "Example: 'A table for two on Sunday at 8pm please, I am Tom Lee' -> "
                '{"date": "Sunday", "time": "8pm", "people": "two", "first_name": "Tom", "last_name": "Lee"}'
            ),
            checks=(
                Check("every value is a span of the message", _spans_of_message),
                Check("people is a positive integer", _people_positive),
                Check("time parses", _time_parses),
            ),
            local_only=True,
        ),
    ),
    default_plan=default_plan("extract"),
    finalize=_finalize,
)


# `build(checkpointer=..., registry=..., resources=...)` compiles it (the CLI, tests); `graph`
# is for langgraph.json: no checkpointer here, the LangGraph server brings its own.
build = WORKFLOW.compile
graph = build()
