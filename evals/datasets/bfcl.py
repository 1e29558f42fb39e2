"""Function calling: BFCL v4 single-turn categories (simple_python, multiple, parallel,
irrelevance).

Question files are JSON Lines despite their ``.json`` name. The accepted answers live in a
sibling ``possible_answer/`` folder under the same file name, one
``{func_name: {param: [accepted values]}}`` per expected call; ``""`` in an accepted list
means the parameter may be left out. Irrelevance files have no answers upstream: the
right behaviour is to make no call, which is ``expected.calls == []`` here; relevance
files have none either, and any call is right (``expected.any_call``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._files import existing_file, read_jsonl
from .cases import Case, Dataset, DatasetFormatError, DatasetSource, FrozenModel

__all__ = [
    "ChatMessage",
    "FunctionDoc",
    "ExpectedCall",
    "FunctionCallInputs",
    "FunctionCallExpected",
    "FunctionCallCase",
    "FunctionCallDataset",
    "bfcl_category",
    "bfcl_json_schema",
    "tool_safe_name",
    "load_bfcl",
]

_ItemT = TypeVar("_ItemT", bound=BaseModel)
_FILE_NAME = re.compile(r"^BFCL_v\d+_(?P<category>.+?)\.jsonl?$")


class ChatMessage(FrozenModel):
    role: str
    content: str


class FunctionDoc(FrozenModel):
    """A function the model may call: BFCL's JSON-Schema-like description, kept as given
    (its type names are BFCL's: ``dict``, ``float``, ``tuple``, ``any``...)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)

    def openai_function(self) -> dict[str, Any]:
        """This function as a caller declares it to a model (OpenAI tool format, bare): BFCL's
        Python type names mapped to JSON Schema, as BFCL itself does for OpenAI models
        (dict -> object, float -> number, tuple -> array, any -> no type), and dots in the
        name replaced by underscores (tool names cannot contain dots; the evaluator accepts
        either spelling)."""
        return {
            "name": tool_safe_name(self.name),
            "description": self.description,
            "parameters": bfcl_json_schema(self.parameters or {"type": "dict", "properties": {}}),
        }

    @property
    def required(self) -> list[str]:
        return list(self.parameters.get("required") or [])

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.parameters.get("properties") or {})


_JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
_BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array", "list": "array", "bool": "boolean", "int": "integer", "str": "string"}
_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9_-]")


def tool_safe_name(name: str) -> str:
    """A BFCL function name as a tool name may be written (letters, digits, _ and -, at most
    64): "math.factorial" -> "math_factorial". Models see this; the evaluator accepts it."""
    return _UNSAFE_IN_NAMES.sub("_", name)[:64]


def _json_type(name: str) -> str | None:
    """A BFCL type name as a JSON Schema type: Python names mapped as BFCL maps them for
    OpenAI models; "any" -> no type; a language type (Java's "String", "HashMap"...) ->
    "string", since BFCL's Java and JavaScript categories take every value as source text."""
    if name == "any":
        return None
    return name if name in _JSON_TYPES else _BFCL_TYPES.get(name, "string")


def bfcl_json_schema(schema: Any) -> Any:
    """BFCL's parameter description as JSON Schema (see `FunctionDoc.openai_function`)."""
    if isinstance(schema, list):
        return [bfcl_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            kind = _json_type(value)
            if kind is not None:
                out[key] = kind
        elif key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: bfcl_json_schema(item) for name, item in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems"):
            out[key] = bfcl_json_schema(value)
        else:
            out[key] = value
    return out


class ExpectedCall(BaseModel):
    """One call the model must make: the function and, per parameter, every accepted value."""

    name: str
    accepted_arguments: dict[str, list[Any]]


class FunctionCallInputs(FrozenModel):
    messages: list[ChatMessage]
    functions: list[FunctionDoc]


class FunctionCallExpected(FrozenModel):
    category: str
    # Empty for irrelevance: the only right answer is no call at all.
    calls: list[ExpectedCall] = Field(default_factory=list)
    # BFCL's relevance categories have no answers: any call at all is right.
    any_call: bool = False


FunctionCallCase = Case[FunctionCallInputs, FunctionCallExpected]
FunctionCallDataset = Dataset[FunctionCallInputs, FunctionCallExpected]


def bfcl_category(path: Path) -> str:
    """``BFCL_v4_simple_python.json`` -> ``simple_python``."""
    match = _FILE_NAME.match(path.name)
    if match is None:
        raise DatasetFormatError(
            path, "cannot tell the BFCL category from the file name; expected BFCL_v<N>_<category>.json"
        )
    return match["category"]


def _first_problem(err: ValidationError) -> str:
    """pydantic's first complaint on one line ("content: Input should be a valid string"):
    the CLI prints a format error as one line."""
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def _messages(path: Path, line: int, question: Any) -> list[ChatMessage]:
    if not isinstance(question, list) or not question or not all(isinstance(turn, list) for turn in question):
        raise DatasetFormatError(path, "question must be a list of turns, each a list of messages", row=line)
    if len(question) != 1:
        raise DatasetFormatError(
            path,
            f"question has {len(question)} turns; only single-turn BFCL categories are supported",
            row=line,
        )
    return _each(path, line, question[0], ChatMessage, "question[0]", "each message must be {role, content} strings")


def _each(path: Path, line: int, items: list[Any], model: type[_ItemT], where: str, rule: str) -> list[_ItemT]:
    """Every item validated as `model`; the first that is not is a format error naming the
    file and line (pydantic's own error names neither)."""
    validated: list[_ItemT] = []
    for index, item in enumerate(items):
        try:
            validated.append(model.model_validate(item))
        except ValidationError as err:
            raise DatasetFormatError(path, f"{where}[{index}]: {rule} ({_first_problem(err)})", row=line) from err
    return validated


def _functions(path: Path, line: int, docs: Any) -> list[FunctionDoc]:
    if not isinstance(docs, list):
        raise DatasetFormatError(path, "function must be a list of function docs", row=line)
    return _each(path, line, docs, FunctionDoc, "function", "each function doc must be {name, description?, parameters?}")


def _expected_calls(path: Path, line: int, ground_truth: Any) -> list[ExpectedCall]:
    if not isinstance(ground_truth, list) or not ground_truth:
        raise DatasetFormatError(path, "ground_truth must be a non-empty list of calls", row=line)
    calls: list[ExpectedCall] = []
    for entry in ground_truth:
        if not (isinstance(entry, dict) and len(entry) == 1):
            raise DatasetFormatError(path, f"each ground_truth entry must be {{func_name: {{...}}}}, got {entry!r}", row=line)
        ((name, arguments),) = entry.items()
        if not isinstance(arguments, dict) or not all(isinstance(v, list) for v in arguments.values()):
            raise DatasetFormatError(path, f"arguments of {name!r} must map each param to a list of accepted values", row=line)
        calls.append(ExpectedCall(name=name, accepted_arguments=arguments))
    return calls


def load_bfcl(
    path: str | Path,
    *,
    answers_path: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> FunctionCallDataset:
    """A BFCL question file plus its ``possible_answer/`` file (default: same name in the
    ``possible_answer`` folder next to it). Irrelevance categories need no answer file."""
    questions_path = existing_file(path, "BFCL question file")
    category = bfcl_category(questions_path)
    expects_no_call = "irrelevance" in category
    expects_any_call = not expects_no_call and category.endswith("relevance")
    answers: dict[str, list[ExpectedCall]] = {}
    answers_file: Path | None = None
    if not (expects_no_call or expects_any_call):
        answers_file = existing_file(
            answers_path if answers_path is not None else questions_path.parent / "possible_answer" / questions_path.name,
            f"BFCL possible_answer file for {category!r} (pass answers_path=)",
        )
        for line, record in read_jsonl(answers_file):
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                raise DatasetFormatError(answers_file, "each line must be {id, ground_truth} with a string id", row=line)
            answers[record["id"]] = _expected_calls(answers_file, line, record.get("ground_truth"))

    cases: list[FunctionCallCase] = []
    seen: set[str] = set()
    for line, record in read_jsonl(questions_path):
        if not isinstance(record, dict) or not {"id", "question", "function"} <= record.keys():
            raise DatasetFormatError(questions_path, "each line must be {id, question, function}", row=line)
        case_id = record["id"]
        # Checked here, with the line: the dataset would refuse the same ids later, but
        # without naming the file (irrelevance files have no answer file to catch them).
        if not isinstance(case_id, str):
            raise DatasetFormatError(questions_path, f"id must be a string, got {case_id!r}", row=line)
        if case_id in seen:
            raise DatasetFormatError(questions_path, f"duplicate id {case_id!r}; ids must be unique", row=line)
        seen.add(case_id)
        if expects_no_call or expects_any_call:
            calls: list[ExpectedCall] = []
        elif case_id in answers:
            calls = answers.pop(case_id)
        else:
            raise DatasetFormatError(questions_path, f"no possible answer for id {case_id!r} in {answers_file}", row=line)
        cases.append(
            FunctionCallCase(
                id=case_id,
                inputs=FunctionCallInputs(
                    messages=_messages(questions_path, line, record["question"]),
                    functions=_functions(questions_path, line, record["function"]),
                ),
                expected=FunctionCallExpected(category=category, calls=calls, any_call=expects_any_call),
                metadata={"line": line},
            )
        )
    if answers:
        raise DatasetFormatError(
            answers_file or questions_path,
            f"{len(answers)} answer id(s) have no question (e.g. {sorted(answers)[:3]}); are the two files from the same release?",
        )
    dataset = FunctionCallDataset(
        name=f"bfcl_{category}",
        cases=cases,
        source=DatasetSource(path=str(questions_path), format="bfcl-jsonl"),
        metadata={"category": category, "answers_path": str(answers_file) if answers_file else None},
    )
    return dataset.sample(limit, seed, stratify=lambda case: len(case.expected.calls))
