"""The replay provider: a chat model that answers with recorded outputs of a real model.

A recording is a CSV with one row per question (RouteLLM's GSM8K file: ``prompt`` plus,
per model, a ``<model>_response`` column), or a ``.jsonl`` file of recorded outcomes of
any ladder of models (the format of model_tiers/providers/recorded.py: one case per line,
``outcomes`` keyed by model name). The model finds the question that occurs in the prompt
it is sent (exact text after whitespace normalisation) and answers with that model's
recorded response, so escalation policies are measured on real model behaviour with no
model call. A retry returns the same answer: it is a recording.

Tier options (``[tiers.options]`` in a tiers file)::

    recording = "routellm_gsm8k/gsm8k_responses_even.csv"  # absolute, or under the datasets dir
    model = "mistralai/Mixtral-8x7B-Instruct-v0.1"           # CSV: "<model>_response"; JSONL: outcomes key
    response_column = "..."                                   # optional, CSV only, overrides the above
    question_column = "prompt"                                # optional, CSV only
    fields = { solution = "response", final_answer = "final_number" }
    final_number = "tierflow.agents.numbers:extract_final_number"

Structured output (a forced tool call) is filled from ``fields``: each schema field maps
to a source, ``response`` (the recorded text), ``final_number`` (the number the
``final_number`` parser reads out of it, as text; empty when it finds none) or
``correct`` (the recorded grade as ``"true"``/``"false"``; empty when not recorded: a CSV
grades in the column named after the model). The parser is named in configuration, not
imported here, because model_tiers imports nothing else of tierflow. Relative recordings
resolve under the datasets folder (``model_tiers.home.datasets_dir``: ``$TIERFLOW_DATASETS``,
else ``../shared/datasets``).

A CSV holds no token counts, so usage is estimated: ``estimate_tokens`` (4 characters
per token, the ledger's rule) of the prompt actually sent, and of the recorded response
(what the real model generated, without the JSON wrapper of a tool call). A JSONL outcome's
``input_tokens``/``output_tokens`` are used when recorded (``tokens_estimated`` False);
its ``confidence`` goes to ``response_metadata[CONFIDENCE_KEY]`` and its ``latency_s`` to
``response_metadata["replay_latency_s"]``.
"""

from __future__ import annotations

import csv
import importlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from tierflow.model_tiers.errors import ConfigError
from tierflow.model_tiers.home import DATASETS_ENV_VAR, datasets_dir
from tierflow.model_tiers.ledger import CONFIDENCE_KEY, estimate_tokens
from tierflow.model_tiers.providers._tool_calling import ToolCallingChatModel, forced_tool_name, messages_as_text
from tierflow.model_tiers.providers.matching import RecordingMiss, match_question, normalize_question
from tierflow.model_tiers.providers.recorded import RecordedFile, load_recorded
from tierflow.model_tiers.spec import TierConfig

__all__ = [
    "replayed_from",
    "ReplayChatModel",
    "Recording",
    "RecordingMiss",
    "FIELD_SOURCES",
    "load_recording",
    "match_question",
    "normalize_question",
    "replay_model_from_options",
    "resolve_recording_path",
]

FIELD_SOURCES = ("response", "final_number", "correct")
_KNOWN_OPTIONS = {"recording", "model", "response_column", "question_column", "fields", "final_number"}


@dataclass(frozen=True)
class Recording:
    """One recorded file, indexed by normalised question."""

    path: Path
    question_column: str
    columns: tuple[str, ...]
    rows: tuple[Mapping[str, str], ...]
    index: Mapping[str, int]

    def row_for(self, messages: Sequence[BaseMessage]) -> int:
        """The row whose question the human messages contain; raises `RecordingMiss`."""
        return match_question(self.index, messages, count=len(self.rows), source=str(self.path))


_RECORDINGS: dict[tuple[str, int, int, str], Recording] = {}
_RECORDINGS_LOCK = threading.Lock()


def load_recording(path: Path, question_column: str = "prompt") -> Recording:
    """The indexed recording at `path`, read once per process (re-read if the file changes)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, question_column)
    with _RECORDINGS_LOCK:
        cached = _RECORDINGS.get(key)
        if cached is None:
            cached = _read_recording(path, question_column)
            _RECORDINGS[key] = cached
        return cached


def _read_recording(path: Path, question_column: str) -> Recording:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = tuple(reader.fieldnames or ())
            if question_column not in columns:
                raise ConfigError(
                    f"the recording has no question column {question_column!r} (columns: {list(columns)}); "
                    "set options.question_column",
                    source=str(path),
                )
            rows = tuple(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"cannot read the recording: {err}", source=str(path)) from None
    index: dict[str, int] = {}
    for number, row in enumerate(rows):
        # The first row of a repeated question wins; a repeat is not an error (GSM8K has none).
        index.setdefault(normalize_question(row[question_column] or ""), number)
    return Recording(path=path, question_column=question_column, columns=columns, rows=rows, index=index)


def resolve_recording_path(recording: str, env: Mapping[str, str] | None = None) -> Path:
    """An absolute path as is; a relative one under ``$TIERFLOW_DATASETS`` or, by default,
    ``<repo>/../shared/datasets``. Raises ConfigError naming where it looked."""
    environ = os.environ if env is None else env
    candidate = Path(recording).expanduser()
    if not candidate.is_absolute():
        candidate = datasets_dir(environ) / candidate
    if not candidate.is_file():
        raise ConfigError(
            f"replay recording not found at {candidate}; give options.recording as an absolute path "
            f"or relative to the datasets folder (${DATASETS_ENV_VAR})"
        )
    return candidate


def _import_function(ref: str, tier: str) -> Callable[[str], float | None]:
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ConfigError(f"tier '{tier}': options.final_number '{ref}' must be written 'package.module:function'")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"tier '{tier}': cannot import options.final_number '{ref}': {err}") from None
    if not callable(found):
        raise ConfigError(f"tier '{tier}': options.final_number '{ref}' is not a function")
    # Trusted as the declared signature: the function named in the tiers file is the user's.
    function: Callable[[str], float | None] = found
    return function


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class _Replayed:
    """One recorded answer, from a CSV row or a JSONL case; None = not recorded."""

    number: int  # the CSV row, or the JSONL case's number in the file
    text: str
    correct: bool | None
    case_id: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    confidence: float | None = None
    latency_s: float | None = None


def _is_jsonl(path: str | Path) -> bool:
    return str(path).lower().endswith(".jsonl")


class ReplayChatModel(ToolCallingChatModel):
    """Answers with a recorded model's response to the question found in the prompt."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tier: str
    model: str
    recording_path: Path
    response_column: str  # CSV only; a JSONL recording is keyed by `model`
    question_column: str = "prompt"
    fields: dict[str, str] = Field(default_factory=lambda: {"solution": "response", "final_answer": "final_number"})
    final_number: Callable[[str], float | None] | None = None
    _recording: Recording | None = PrivateAttr(default=None)
    _recorded: RecordedFile | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "tierflow-replay"

    def recording(self) -> Recording:
        """The indexed CSV recording, loaded on first use (shared by every tier of the file)."""
        if _is_jsonl(self.recording_path):
            raise ConfigError(f"tier '{self.tier}': {self.recording_path.name} is a JSONL recording; use recorded()")
        with self._lock:
            if self._recording is None:
                recording = load_recording(self.recording_path, self.question_column)
                if self.response_column not in recording.columns:
                    raise ConfigError(
                        f"tier '{self.tier}': the recording has no column {self.response_column!r}; "
                        f"response columns there: {[c for c in recording.columns if c.endswith('_response')]}",
                        source=str(self.recording_path),
                    )
                self._recording = recording
            return self._recording

    def recorded(self) -> RecordedFile:
        """The JSONL recording (model_tiers.providers.recorded), loaded on first use."""
        with self._lock:
            if self._recorded is None:
                recorded = load_recorded(self.recording_path)
                if self.model not in recorded.models:
                    raise ConfigError(
                        f"tier '{self.tier}': no case of the recording has an outcome of the model "
                        f"{self.model!r}; models there: {list(recorded.models)} (set options.model to one)",
                        source=str(self.recording_path),
                    )
                self._recorded = recorded
            return self._recorded

    def _replayed(self, messages: Sequence[BaseMessage]) -> _Replayed:
        if _is_jsonl(self.recording_path):
            recorded = self.recorded()
            number = recorded.case_for(messages)
            outcome = recorded.outcome(number, self.model)
            return _Replayed(
                number=number, text=outcome.answer or "", correct=outcome.correct, case_id=recorded.cases[number].id,
                input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens,
                confidence=outcome.confidence, latency_s=outcome.latency_s,
            )
        recording = self.recording()
        row = recording.row_for(messages)
        record = recording.rows[row]
        # RouteLLM's CSVs grade each model in a column named after it ("True"/"False").
        correct = {"True": True, "False": False}.get(record.get(self.model) or "")
        return _Replayed(number=row, text=record[self.response_column] or "", correct=correct)

    def recorded_response(self, messages: Sequence[BaseMessage]) -> tuple[int, str]:
        """(row or case number, recorded response) for the question in `messages`."""
        replayed = self._replayed(messages)
        return replayed.number, replayed.text

    def _field_values(self, target: str, tools: Sequence[dict[str, Any]], replayed: _Replayed) -> dict[str, Any]:
        tool = next((t for t in tools if t["function"]["name"] == target), None)
        parameters = (tool or {}).get("function", {}).get("parameters", {})
        properties = parameters.get("properties", {})
        required = set(parameters.get("required", []))
        values: dict[str, Any] = {}
        for name in properties:
            source = self.fields.get(name)
            if source is None:
                if name in required:
                    raise ConfigError(
                        f"tier '{self.tier}': the replay cannot fill the required field '{name}' of "
                        f"'{target}'; map it in options.fields (sources: {', '.join(FIELD_SOURCES)})"
                    )
                continue
            if source == "response":
                values[name] = replayed.text
            elif source == "correct":
                values[name] = "" if replayed.correct is None else str(replayed.correct).lower()
            else:
                assert self.final_number is not None  # checked when the model is built
                values[name] = _number_text(self.final_number(replayed.text))
        return values

    def _answer(
        self, messages: list[BaseMessage], tools: list[dict[str, Any]], tool_choice: Any, stop: list[str] | None
    ) -> ChatResult:
        replayed = self._replayed(messages)
        target = forced_tool_name(tools, tool_choice) if tools else None
        if target is not None:
            args = self._field_values(target, tools, replayed)
            message = AIMessage(content="", tool_calls=[{"name": target, "args": args, "id": f"replay_{replayed.number}"}])
        else:
            message = AIMessage(content=replayed.text)
        # Recorded counts are what the real model was billed for; without them, estimate.
        estimated = replayed.input_tokens is None or replayed.output_tokens is None
        input_tokens = replayed.input_tokens
        if input_tokens is None:
            input_tokens = estimate_tokens(messages_as_text(messages))
        output_tokens = replayed.output_tokens
        if output_tokens is None:
            output_tokens = estimate_tokens(replayed.text)
        message.usage_metadata = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        metadata: dict[str, Any] = {"model_name": self.model, "replay_row": replayed.number, "tokens_estimated": estimated}
        if estimated:
            metadata["token_estimate"] = "4 characters per token (model_tiers.ledger.estimate_tokens)"
        if replayed.case_id is not None:
            metadata["replay_case"] = replayed.case_id
        if replayed.confidence is not None:
            metadata[CONFIDENCE_KEY] = replayed.confidence
        if replayed.latency_s is not None:
            metadata["replay_latency_s"] = replayed.latency_s
        message.response_metadata = metadata
        return ChatResult(generations=[ChatGeneration(message=message)])


def replayed_from(config: TierConfig, dataset: Path) -> TierConfig:
    """`config` with every replay tier's recording pointed at `dataset`: an eval of another
    file of recordings (the other half, a new split) must replay that file's answers, not
    those of the file the tiers file names. Other tiers are left as they are."""
    data = config.model_dump()
    replayed = [t for t in data["tiers"] if t["provider"] == "replay"]
    if not replayed:
        return config
    for tier in replayed:
        tier["options"]["recording"] = str(Path(dataset).resolve())
    return TierConfig.model_validate(data)


def replay_model_from_options(tier: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> ReplayChatModel:
    """Build a replay model from a tier's `options` (see the module docstring)."""
    unknown = set(options) - _KNOWN_OPTIONS
    if unknown:
        raise ConfigError(f"tier '{tier}': unknown replay options {sorted(unknown)}; allowed: {sorted(_KNOWN_OPTIONS)}")
    if not options.get("recording"):
        raise ConfigError(f"tier '{tier}' is a replay tier but has no options.recording (the recorded CSV or JSONL file)")
    model = str(options.get("model") or "")
    jsonl = _is_jsonl(str(options["recording"]))
    if jsonl:
        csv_only = sorted(key for key in ("response_column", "question_column") if options.get(key))
        if csv_only:
            raise ConfigError(
                f"tier '{tier}': options {csv_only} apply to CSV recordings; a JSONL recording is "
                "keyed by options.model (a model name in its outcomes)"
            )
        if not model:
            raise ConfigError(f"tier '{tier}': set options.model, the model of the JSONL recording's outcomes to replay")
    response_column = "" if jsonl else str(options.get("response_column") or (f"{model}_response" if model else ""))
    if not response_column and not jsonl:
        raise ConfigError(f"tier '{tier}': set options.model (the recorded model) or options.response_column")
    fields = dict(options.get("fields") or {"solution": "response", "final_answer": "final_number"})
    bad = {name: source for name, source in fields.items() if source not in FIELD_SOURCES}
    if bad:
        raise ConfigError(f"tier '{tier}': options.fields {bad} use unknown sources; allowed: {', '.join(FIELD_SOURCES)}")
    parser = None
    if "final_number" in fields.values():
        if not options.get("final_number"):
            raise ConfigError(
                f"tier '{tier}': options.fields uses 'final_number', so options.final_number must name "
                "the parser, e.g. 'tierflow.agents.numbers:extract_final_number'"
            )
        parser = _import_function(str(options["final_number"]), tier)
    return ReplayChatModel(
        tier=tier,
        model=model or response_column,
        recording_path=resolve_recording_path(str(options["recording"]), env),
        response_column=response_column,
        question_column=str(options.get("question_column") or "prompt"),
        fields=fields,
        final_number=parser,
    )
