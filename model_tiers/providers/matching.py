"""How a prompt finds its question in a recording: shared by the two recording formats.

The replay provider (`replay.py`, RouteLLM's CSVs) and the recorded-outcomes format
(`recorded.py`, JSONL) both index their questions by `normalize_question` and answer the
prompt whose human messages ask one of them (`match_question`). Both need these, and
`replay.py` reads JSONL recordings through `recorded.py`, so they live here, below both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from langchain_core.messages import BaseMessage, HumanMessage

from tierflow.model_tiers.errors import ConfigError

__all__ = ["RecordingMiss", "normalize_question", "match_question"]

_FENCED = re.compile(r"<<<\s*(.*?)\s*>>>", re.S)


class RecordingMiss(ConfigError):
    """The prompt's question is not in the recording, so the replay tier cannot answer.

    A ConfigError, not an InvalidModelOutput: no model misbehaved; the run uses a
    recording that does not cover its input, and escalating would only hide that.
    """


def normalize_question(text: str) -> str:
    """The key a question is matched by: NFC, whitespace runs collapsed, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def match_question(index: Mapping[str, int], messages: Sequence[BaseMessage], *, count: int, source: str) -> int:
    """The entry of `index` (normalised question -> number) whose question the human
    messages ask: a ``<<< >>>`` fenced block or a whole message first, else the longest
    question contained in a message. Raises `RecordingMiss` naming `source`; shared by
    the CSV and the JSONL recordings so both match prompts the same way."""
    texts = [m.content for m in messages if isinstance(m, HumanMessage) and isinstance(m.content, str)]
    for text in texts:
        for candidate in (*_FENCED.findall(text), text):
            row = index.get(normalize_question(candidate))
            if row is not None:
                return row
    # Slow path: the question is embedded in a prompt without a fence.
    best: tuple[int, int] | None = None
    for text in texts:
        haystack = normalize_question(text)
        for question, row in index.items():
            if question and question in haystack and (best is None or len(question) > best[0]):
                best = (len(question), row)
    if best is not None:
        return best[1]
    asked = normalize_question(texts[0] if texts else "")[:160]
    raise RecordingMiss(
        f"no recorded answer for the question {asked!r}: the replay recording has {count} "
        f"questions and this is not one of them; replay only the questions of that file, or "
        f"use a live tier for other input",
        source=source,
    )
