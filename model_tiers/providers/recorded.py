"""Recorded outcomes: one JSONL format for what a ladder of N models answered, per case.

Users replay their own logged traffic with it (the ``replay`` provider reads any recording
whose path ends in ``.jsonl``), and RouteLLM's CSVs convert to it
(``python -m tierflow.evals.datasets.recorded_convert``). One JSON object per line; blank lines are
allowed::

    {"id": "gsm8k-0", "input": "<the question / prompt text>",
     "group": "<optional, e.g. an MMLU subject>", "reference": <optional expected answer, any JSON>,
     "outcomes": {"<model name>": {"answer": "<text>" | null, "correct": true | false | null,
                                   "input_tokens": int | null, "output_tokens": int | null,
                                   "cost_usd": float | null, "latency_s": float | null,
                                   "confidence": float in [0, 1] | null}, ...}}

* ``id``, ``input`` and ``outcomes`` (at least one model) are required; ids are unique.
* Other top-level keys are kept (``case.model_extra``): logs carry their own metadata,
  e.g. ``"contaminated": true``. An outcome entry is strict: an unknown key is an error,
  because a misspelt ``confidnce`` silently read as "absent" would skew a benchmark.
* Types are strict (``"correct": "true"`` is an error, not a coercion); every outcome key
  is optional, null or absent meaning "not recorded".
* Models in ``outcomes`` are in ladder order, cheapest first, by convention;
  ``RecordedFile.models`` keeps the first-seen order.

`read_recorded` is tolerant: a bad line becomes a `RecordedLineError` in
``RecordedFile.errors`` (file, line, reason) and the rest of the file is read; only an
unreadable file, or one with no valid line, raises. Pass ``strict=True`` to raise on the first bad line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from tierflow.model_tiers.errors import ConfigError
from tierflow.model_tiers.providers.matching import RecordingMiss, match_question, normalize_question

__all__ = [
    "RecordedOutcome",
    "RecordedCase",
    "RecordedFile",
    "RecordedLineError",
    "read_recorded",
    "load_recorded",
    "write_recorded",
    "case_json",
]


class RecordedOutcome(BaseModel):
    """What one model did on one case; every key optional (null = not recorded)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    answer: str | None = None
    correct: bool | None = None
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0)
    latency_s: float | None = Field(default=None, ge=0)
    confidence: float | None = Field(default=None, ge=0, le=1)


class RecordedCase(BaseModel):
    """One input and the outcome of each model of the ladder on it."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    id: str = Field(min_length=1)
    input: str
    group: str | None = None
    reference: JsonValue = None
    outcomes: dict[str, RecordedOutcome] = Field(min_length=1)


class RecordedLineError(ConfigError):
    """One bad line of a recorded-outcomes file: collected, or raised under ``strict``."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(reason, source=f"{path}, line {line}")


@dataclass(frozen=True)
class RecordedFile:
    """A read recorded-outcomes file: its valid cases, indexed by normalised input."""

    path: Path
    cases: tuple[RecordedCase, ...]
    lines: tuple[int, ...]  # the 1-based line of each case, for messages
    models: tuple[str, ...]
    index: dict[str, int]
    errors: tuple[RecordedLineError, ...]

    def case_for(self, messages: Sequence[BaseMessage]) -> int:
        """The number of the case whose input the human messages contain (as for a CSV
        recording: a ``<<< >>>`` fenced question, else the longest contained input)."""
        return match_question(self.index, messages, count=len(self.cases), source=str(self.path))

    def outcome(self, number: int, model: str) -> RecordedOutcome:
        """Case `number`'s outcome of `model`; RecordingMiss when that case lacks it."""
        case = self.cases[number]
        found = case.outcomes.get(model)
        if found is None:
            raise RecordingMiss(
                f"case {case.id!r} (line {self.lines[number]}) has no outcome of the model {model!r}; "
                f"it has {sorted(case.outcomes)}",
                source=str(self.path),
            )
        return found


def _reason(err: ValidationError) -> str:
    reasons = []
    for item in err.errors():
        where = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(RecordedOutcome.model_fields)
            reasons.append(f"unknown outcome key {where!r} (allowed: {allowed})")
        else:
            reasons.append(f"{where or 'line'}: {item['msg']}")
    return "; ".join(reasons)


def read_recorded(path: str | Path, *, strict: bool = False) -> RecordedFile:
    """The cases of the JSONL file at `path` (see the module docstring for the format)."""
    source = Path(path).expanduser()
    try:
        raw = source.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read the recorded outcomes file: {err}", source=str(source)) from None
    cases: list[RecordedCase] = []
    lines: list[int] = []
    errors: list[RecordedLineError] = []
    first_line: dict[str, int] = {}
    # Decoded line by line, so one mis-encoded line is an error entry, not a lost file.
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8-sig" if number == 1 else "utf-8")
            if not text.strip():
                continue
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            case = RecordedCase.model_validate(data)
            if case.id in first_line:
                raise ValueError(f"duplicate id {case.id!r} (first on line {first_line[case.id]})")
        except UnicodeDecodeError as err:
            errors.append(RecordedLineError(source, number, f"not UTF-8 text ({err.reason} at byte {err.start})"))
        except json.JSONDecodeError as err:
            errors.append(RecordedLineError(source, number, f"not valid JSON ({err.msg} at column {err.colno})"))
        except ValidationError as err:
            errors.append(RecordedLineError(source, number, _reason(err)))
        except ValueError as err:
            errors.append(RecordedLineError(source, number, str(err)))
        else:
            first_line[case.id] = number
            cases.append(case)
            lines.append(number)
            continue
        if strict:
            raise errors[-1]
    if not cases:
        detail = f"; first problem: line {errors[0].line}: {errors[0].reason}" if errors else ""
        raise ConfigError(
            f"no valid recorded case in the file ({len(errors)} bad lines){detail}; expected one JSON object "
            'per line with "id", "input" and "outcomes" (model_tiers/providers/recorded.py documents the format)',
            source=str(source),
        )
    index: dict[str, int] = {}
    models: dict[str, None] = {}
    for number, case in enumerate(cases):
        # The first case of a repeated input wins, as in a CSV recording: logs do repeat inputs.
        index.setdefault(normalize_question(case.input), number)
        models.update(dict.fromkeys(case.outcomes))
    return RecordedFile(
        path=source, cases=tuple(cases), lines=tuple(lines), models=tuple(models), index=index, errors=tuple(errors)
    )


_FILES: dict[tuple[str, int, int], RecordedFile] = {}
_FILES_LOCK = threading.Lock()


def load_recorded(path: Path) -> RecordedFile:
    """`read_recorded(path)`, once per process (re-read if the file changes): every tier of
    a ladder replays the same file, and a log may be large."""
    try:
        stat = path.stat()
    except OSError as err:
        raise ConfigError(f"cannot read the recorded outcomes file: {err}", source=str(path)) from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _FILES_LOCK:
        cached = _FILES.get(key)
        if cached is None:
            cached = read_recorded(path)
            _FILES[key] = cached
        return cached


def case_json(case: RecordedCase) -> str:
    """One line of the format: absent optional keys left out, outcomes last (most readable)."""
    data = case.model_dump(mode="json", exclude={"outcomes"})
    for key in ("group", "reference"):
        if data.get(key) is None:
            data.pop(key, None)
    data["outcomes"] = {name: o.model_dump(mode="json", exclude_none=True) for name, o in case.outcomes.items()}
    return json.dumps(data, ensure_ascii=False)


def write_recorded(path: str | Path, cases: Iterable[RecordedCase]) -> int:
    """Write `cases` as JSONL at `path`; returns how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8", newline="\n") as handle:
        for case in cases:
            handle.write(case_json(case) + "\n")
            count += 1
    return count
