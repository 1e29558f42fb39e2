"""BFCL's *live* categories through the BFCL loader and the function-call evaluator.

The live files are held out of the shared datasets (see its SOURCE.md), so every file here
is a small invented sample written in the upstream layout: ``BFCL_v4_<category>.json``
(JSON Lines) with its answers under ``possible_answer/`` by the same name, none for
live_irrelevance and live_relevance. The shapes follow upstream's live files: ids
``live_<category>_<n>-<function set>-<variant>``, a question that is one turn of several
messages (often a system message first), ``dict`` at the top of the parameters with JSON
type names, enums, nested dicts and ``any`` inside, and accepted values that may hold
``""`` (optional), ``null`` or a nested accepted map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tierflow.evals.datasets import DatasetFormatError
from tierflow.evals.datasets.bfcl import bfcl_category, bfcl_json_schema, load_bfcl
from tierflow.evals.evaluators.base import run_evaluator
from tierflow.evals.evaluators.function_calls import FunctionCallMatch
from tierflow.model_tiers.errors import ConfigError

# --- invented samples -------------------------------------------------------------------

_TABLE_DOC = {
    "name": "reserve_table",
    "description": "Reserve a table at the user's usual restaurant.",
    "parameters": {
        "type": "dict",
        "required": ["party_size", "time"],
        "properties": {
            "party_size": {"type": "integer", "description": "How many people."},
            "time": {"type": "string", "description": "Arrival time, HH:MM."},
            "seating": {"type": "string", "enum": ["indoor", "outdoor"], "default": "indoor"},
        },
    },
}
_NOTES_DOC = {
    "name": "notes.append",
    "description": "Append an entry to the user's notebook.",
    "parameters": {
        "type": "dict",
        "required": ["payload"],
        "properties": {
            "payload": {"type": "any", "description": "Whatever the user wants kept."},
            "tags": {"type": "array", "items": {"type": "string"}, "default": []},
        },
    },
}
_LAMP_DOC = {
    "name": "inventory.search",
    "description": "Search the shop's stock.",
    "parameters": {
        "type": "dict",
        "required": ["query"],
        "properties": {
            "query": {"type": "string"},
            "filters": {
                "type": "object",
                "properties": {
                    "colour": {"type": "string"},
                    "max_price": {"type": "number", "default": None},
                },
            },
            "near": {"type": "tuple", "items": {"type": "float"}, "description": "(lat, lon)"},
        },
    },
}

LIVE_SIMPLE = [
    {
        "id": "live_simple_0-0-0",
        "question": [[{"role": "user", "content": "Reserva una mesa para 4 personas a las 19:30, dentro por favor."}]],
        "function": [_TABLE_DOC],
    },
    {
        "id": "live_simple_1-1-0",
        "question": [[
            {"role": "system", "content": "You keep the user's notebook tidy."},
            {"role": "user", "content": "Note down: buy oat milk."},
        ]],
        "function": [_NOTES_DOC],
    },
    {
        "id": "live_simple_2-2-0",
        "question": [[{"role": "user", "content": "Any green lamps in stock?"}]],
        "function": [_LAMP_DOC],
    },
]
LIVE_SIMPLE_ANSWERS = [
    {"id": "live_simple_0-0-0", "ground_truth": [{"reserve_table": {"party_size": [4], "time": ["19:30", "7:30 PM"], "seating": ["indoor", ""]}}]},
    {"id": "live_simple_1-1-0", "ground_truth": [{"notes.append": {"payload": ["buy oat milk"], "tags": ["", []]}}]},
    {
        "id": "live_simple_2-2-0",
        "ground_truth": [{"inventory.search": {"query": ["lamp", "lamps"], "filters": [{"colour": ["green"], "max_price": ["", None]}], "near": [""]}}],
    },
]

LIVE_MULTIPLE = [
    {
        "id": "live_multiple_0-0-0",
        "question": [[
            {"role": "system", "content": "Don't guess values; ask when unsure."},
            {"role": "user", "content": "Book a table for two at 8pm."},
        ]],
        "function": [_NOTES_DOC, _TABLE_DOC, _LAMP_DOC],
    },
    {
        "id": "live_multiple_1-0-1",
        "question": [[{"role": "user", "content": "Remember that the spare key is under the pot."}]],
        "function": [_NOTES_DOC, _TABLE_DOC, _LAMP_DOC],
    },
]
LIVE_MULTIPLE_ANSWERS = [
    {"id": "live_multiple_0-0-0", "ground_truth": [{"reserve_table": {"party_size": [2], "time": ["20:00"], "seating": [""]}}]},
    {"id": "live_multiple_1-0-1", "ground_truth": [{"notes.append": {"payload": ["the spare key is under the pot", "spare key is under the pot"], "tags": [""]}}]},
]

LIVE_PARALLEL = [
    {
        "id": "live_parallel_0-0-0",
        "question": [[{"role": "user", "content": "Tables for 2 at 18:00 and for 6 at 21:00, please."}]],
        "function": [_TABLE_DOC],
    },
]
LIVE_PARALLEL_ANSWERS = [
    {
        "id": "live_parallel_0-0-0",
        "ground_truth": [
            {"reserve_table": {"party_size": [2], "time": ["18:00"], "seating": [""]}},
            {"reserve_table": {"party_size": [6], "time": ["21:00"], "seating": [""]}},
        ],
    },
]

LIVE_IRRELEVANCE = [
    {
        "id": "live_irrelevance_0-0-0",
        "question": [[{"role": "user", "content": "Write me a haiku about autumn."}]],
        "function": [_TABLE_DOC],
    },
    {
        "id": "live_irrelevance_1-1-0",
        "question": [[
            {"role": "system", "content": "You are a shop assistant."},
            {"role": "user", "content": "What's 17 squared?"},
        ]],
        "function": [_LAMP_DOC, _NOTES_DOC],
    },
]

LIVE_RELEVANCE = [
    {
        "id": "live_relevance_0-0-0",
        "question": [[{"role": "user", "content": "Find me something to light up my desk."}]],
        "function": [_LAMP_DOC],
    },
    {
        "id": "live_relevance_1-1-0",
        "question": [[
            {"role": "system", "content": "Use the tools when they help."},
            {"role": "user", "content": "I keep forgetting my dentist appointment on Friday."},
        ]],
        "function": [_NOTES_DOC, _TABLE_DOC],
    },
]


def _jsonl(records: list[Any]) -> str:
    # ensure_ascii as upstream writes its files (non-ASCII as \\u escapes)
    return "".join(json.dumps(record) + "\n" for record in records)


def _write(root: Path, category: str, questions: list[Any], answers: list[Any] | None = None) -> Path:
    """A question file (and its answers, when given) in BFCL's upstream folder layout."""
    path = root / f"BFCL_v4_{category}.json"
    path.write_text(_jsonl(questions), encoding="utf-8")
    if answers is not None:
        (root / "possible_answer").mkdir(exist_ok=True)
        (root / "possible_answer" / path.name).write_text(_jsonl(answers), encoding="utf-8")
    return path


# --- categories -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "category"),
    [
        ("BFCL_v4_live_simple.json", "live_simple"),
        ("BFCL_v4_live_multiple.json", "live_multiple"),
        ("BFCL_v4_live_parallel.json", "live_parallel"),
        ("BFCL_v4_live_parallel_multiple.json", "live_parallel_multiple"),
        ("BFCL_v4_live_irrelevance.json", "live_irrelevance"),
        ("BFCL_v4_live_relevance.json", "live_relevance"),
        ("BFCL_v3_live_simple.json", "live_simple"),  # the v3 release, same format
    ],
)
def test_the_category_comes_from_the_file_name(name: str, category: str) -> None:
    assert bfcl_category(Path(name)) == category


def test_live_simple(tmp_path: Path) -> None:
    dataset = load_bfcl(_write(tmp_path, "live_simple", LIVE_SIMPLE, LIVE_SIMPLE_ANSWERS))
    assert [case.id for case in dataset.cases] == ["live_simple_0-0-0", "live_simple_1-1-0", "live_simple_2-2-0"]
    assert dataset.name == "bfcl_live_simple" and dataset.metadata["category"] == "live_simple"
    assert dataset.metadata["answers_path"] == str(tmp_path / "possible_answer" / "BFCL_v4_live_simple.json")
    assert [case.metadata["line"] for case in dataset.cases] == [1, 2, 3]

    table = dataset.case("live_simple_0-0-0")
    assert table.expected.category == "live_simple" and table.expected.any_call is False
    assert table.inputs.messages[0].content == LIVE_SIMPLE[0]["question"][0][0]["content"]  # \\u escapes decoded
    (doc,) = table.inputs.functions
    assert doc.name == "reserve_table" and doc.required == ["party_size", "time"]
    assert doc.properties["seating"]["enum"] == ["indoor", "outdoor"]
    (call,) = table.expected.calls
    assert call.name == "reserve_table"
    assert call.accepted_arguments == {"party_size": [4], "time": ["19:30", "7:30 PM"], "seating": ["indoor", ""]}

    lamp = dataset.case("live_simple_2-2-0")
    (call,) = lamp.expected.calls
    # a dict parameter's accepted value is itself an accepted map; null is kept as a value
    assert call.accepted_arguments["filters"] == [{"colour": ["green"], "max_price": ["", None]}]
    assert call.accepted_arguments["near"] == [""]


def test_live_multiple_keeps_every_offered_function(tmp_path: Path) -> None:
    dataset = load_bfcl(_write(tmp_path, "live_multiple", LIVE_MULTIPLE, LIVE_MULTIPLE_ANSWERS))
    assert [case.id for case in dataset.cases] == ["live_multiple_0-0-0", "live_multiple_1-0-1"]
    case = dataset.case("live_multiple_0-0-0")
    assert [doc.name for doc in case.inputs.functions] == ["notes.append", "reserve_table", "inventory.search"]
    assert [call.name for call in case.expected.calls] == ["reserve_table"]
    assert dataset.case("live_multiple_1-0-1").expected.calls[0].accepted_arguments["payload"] == [
        "the spare key is under the pot",
        "spare key is under the pot",
    ]


def test_live_parallel_expects_every_call(tmp_path: Path) -> None:
    (case,) = load_bfcl(_write(tmp_path, "live_parallel", LIVE_PARALLEL, LIVE_PARALLEL_ANSWERS)).cases
    assert [call.accepted_arguments["party_size"] for call in case.expected.calls] == [[2], [6]]


def test_live_irrelevance_needs_no_answers_and_expects_no_call(tmp_path: Path) -> None:
    dataset = load_bfcl(_write(tmp_path, "live_irrelevance", LIVE_IRRELEVANCE))
    assert not (tmp_path / "possible_answer").exists()
    assert [case.id for case in dataset.cases] == ["live_irrelevance_0-0-0", "live_irrelevance_1-1-0"]
    assert dataset.metadata["answers_path"] is None
    for case in dataset.cases:
        assert case.expected.category == "live_irrelevance"
        assert case.expected.calls == [] and case.expected.any_call is False
    assert [doc.name for doc in dataset.case("live_irrelevance_1-1-0").inputs.functions] == ["inventory.search", "notes.append"]


def test_live_relevance_needs_no_answers_and_takes_any_call(tmp_path: Path) -> None:
    dataset = load_bfcl(_write(tmp_path, "live_relevance", LIVE_RELEVANCE))
    assert [case.id for case in dataset.cases] == ["live_relevance_0-0-0", "live_relevance_1-1-0"]
    for case in dataset.cases:
        assert case.expected.category == "live_relevance"
        assert case.expected.calls == [] and case.expected.any_call is True


def test_limit_samples_live_cases_deterministically(tmp_path: Path) -> None:
    path = _write(tmp_path, "live_simple", LIVE_SIMPLE, LIVE_SIMPLE_ANSWERS)
    picked = [case.id for case in load_bfcl(path, limit=2, seed=3).cases]
    assert len(picked) == 2 and picked == [case.id for case in load_bfcl(path, limit=2, seed=3).cases]


# --- questions and function docs --------------------------------------------------------


def test_one_turn_of_several_messages_is_kept_in_order(tmp_path: Path) -> None:
    dataset = load_bfcl(_write(tmp_path, "live_multiple", LIVE_MULTIPLE, LIVE_MULTIPLE_ANSWERS))
    messages = dataset.case("live_multiple_0-0-0").inputs.messages
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Don't guess values; ask when unsure."),
        ("user", "Book a table for two at 8pm."),
    ]
    # an earlier assistant reply inside the one turn is kept too
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "A table for 3 at 12:00."}]
    (case,) = load_bfcl(
        _write(tmp_path, "live_simple", [{**LIVE_SIMPLE[0], "question": [chat]}], LIVE_SIMPLE_ANSWERS[:1])
    ).cases
    assert [m.role for m in case.inputs.messages] == ["user", "assistant", "user"]


def test_several_turns_are_refused_with_the_line(tmp_path: Path) -> None:
    # Live categories are single-turn upstream; a question of two turns is a
    # multi-turn entry, which this loader does not flatten into one request.
    two_turns = {**LIVE_SIMPLE[1], "question": [[{"role": "user", "content": "Note this."}], [{"role": "user", "content": "And this."}]]}
    path = _write(tmp_path, "live_simple", [LIVE_SIMPLE[0], two_turns], LIVE_SIMPLE_ANSWERS[:2])
    with pytest.raises(DatasetFormatError, match="2 turns") as caught:
        load_bfcl(path)
    assert caught.value.row == 2 and caught.value.path == str(path)


def test_live_parameter_types_as_json_schema(tmp_path: Path) -> None:
    dataset = load_bfcl(_write(tmp_path, "live_simple", LIVE_SIMPLE, LIVE_SIMPLE_ANSWERS))
    notes = dataset.case("live_simple_1-1-0").inputs.functions[0]
    # "any": a schema with no type at all (any JSON value), its other keys kept
    assert bfcl_json_schema({"type": "any", "description": "x"}) == {"description": "x"}
    tool = notes.openai_function()
    assert tool["name"] == "notes_append"
    assert tool["parameters"]["type"] == "object"
    assert tool["parameters"]["properties"]["payload"] == {"description": "Whatever the user wants kept."}
    assert tool["parameters"]["properties"]["tags"] == {"type": "array", "items": {"type": "string"}, "default": []}
    assert tool["parameters"]["required"] == ["payload"]

    lamp = dataset.case("live_simple_2-2-0").inputs.functions[0].openai_function()["parameters"]
    assert lamp["properties"]["filters"]["type"] == "object"  # JSON type names pass through
    assert lamp["properties"]["filters"]["properties"]["max_price"] == {"type": "number", "default": None}
    assert lamp["properties"]["near"] == {"type": "array", "items": {"type": "number"}, "description": "(lat, lon)"}
    table = dataset.case("live_simple_0-0-0").inputs.functions[0].openai_function()["parameters"]
    assert table["properties"]["seating"] == {"type": "string", "enum": ["indoor", "outdoor"], "default": "indoor"}
    # the doc itself keeps BFCL's names
    assert notes.parameters["type"] == "dict" and notes.properties["payload"]["type"] == "any"


# --- malformed files: a DatasetFormatError naming the file and the line, never a crash ---


def _broken_question(tmp_path: Path, line_two: str) -> Path:
    path = _write(tmp_path, "live_simple", LIVE_SIMPLE[:1], LIVE_SIMPLE_ANSWERS[:2])
    path.write_text(path.read_text(encoding="utf-8") + line_two + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line_two", "reason"),
    [
        ('{"id": "live_simple_1-1-0", "question": [[{"role": "user", "content": "hi"}]], "function": [', "not valid JSON"),
        (json.dumps({"id": "live_simple_1-1-0", "question": [[{"role": "user", "content": "hi"}]]}), "id, question, function"),
        (json.dumps(["live_simple_1-1-0"]), "id, question, function"),
        (json.dumps({"id": "live_simple_1-1-0", "question": "hi", "function": [_NOTES_DOC]}), "list of turns"),
        (json.dumps({"id": "live_simple_1-1-0", "question": [[{"role": "user"}]], "function": [_NOTES_DOC]}), r"question\[0\]\[0\]: each message.*\(content: Field required\)"),
        (json.dumps({"id": "live_simple_1-1-0", "question": [[{"role": "user", "content": None}]], "function": [_NOTES_DOC]}), r"message.*\(content: "),
        (json.dumps({"id": "live_simple_1-1-0", "question": [["hi"]], "function": [_NOTES_DOC]}), "each message must be"),
        (json.dumps({"id": "live_simple_1-1-0", "question": [[{"role": "user", "content": "hi"}]], "function": [{"description": "no name"}]}), r"function\[0\]: each function doc.*\(name: Field required\)"),
        (json.dumps({"id": "live_simple_1-1-0", "question": [[{"role": "user", "content": "hi"}]], "function": _NOTES_DOC}), "function must be a list"),
        (json.dumps({"id": 7, "question": [[{"role": "user", "content": "hi"}]], "function": [_NOTES_DOC]}), "id must be a string"),
        (json.dumps({"id": "live_simple_0-0-0", "question": [[{"role": "user", "content": "again"}]], "function": [_TABLE_DOC]}), "duplicate id 'live_simple_0-0-0'"),
    ],
    ids=["bad-json", "no-function", "not-an-object", "question-not-turns", "message-without-content",
         "null-content", "message-not-an-object", "doc-without-name", "docs-not-a-list", "id-not-a-string", "duplicate-id"],
)
def test_a_malformed_question_line_is_a_format_error_with_its_line(tmp_path: Path, line_two: str, reason: str) -> None:
    path = _broken_question(tmp_path, line_two)
    with pytest.raises(DatasetFormatError, match=reason) as caught:
        load_bfcl(path)
    assert caught.value.row == 2 and caught.value.path == str(path)
    assert "\n" not in str(caught.value)  # the CLI prints it as one line


@pytest.mark.parametrize(
    ("line_two", "reason"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"id": "live_simple_1-1-0"}), "ground_truth"),
        (json.dumps({"id": "live_simple_1-1-0", "ground_truth": {"notes.append": {"payload": ["x"]}}}), "ground_truth"),
        (json.dumps({"id": "live_simple_1-1-0", "ground_truth": [{"notes.append": {"payload": "x"}}]}), "accepted values"),
        (json.dumps({"id": ["live_simple_1-1-0"], "ground_truth": [{"notes.append": {"payload": ["x"]}}]}), "string id"),
    ],
    ids=["bad-json", "no-ground-truth", "ground-truth-not-a-list", "value-not-a-list", "id-not-a-string"],
)
def test_a_malformed_answer_line_is_a_format_error_with_its_line(tmp_path: Path, line_two: str, reason: str) -> None:
    path = _write(tmp_path, "live_simple", LIVE_SIMPLE[:2], LIVE_SIMPLE_ANSWERS[:1])
    answers = tmp_path / "possible_answer" / path.name
    answers.write_text(answers.read_text(encoding="utf-8") + line_two + "\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=reason) as caught:
        load_bfcl(path)
    assert caught.value.row == 2 and caught.value.path == str(answers)


@pytest.mark.parametrize(
    ("line_two", "reason"),
    [
        (json.dumps({**LIVE_IRRELEVANCE[1], "id": LIVE_IRRELEVANCE[0]["id"]}), "duplicate id 'live_irrelevance_0-0-0'"),
        (json.dumps({**LIVE_IRRELEVANCE[1], "id": 1}), "id must be a string"),
        (json.dumps({**LIVE_IRRELEVANCE[1], "function": [{"name": "f", "parameters": "none"}]}), r"function\[0\]: .*\(parameters: Input should be a valid dictionary\)"),
    ],
    ids=["duplicate-id", "id-not-a-string", "parameters-not-an-object"],
)
def test_a_malformed_line_without_answers_is_a_format_error_with_its_line(tmp_path: Path, line_two: str, reason: str) -> None:
    # No answer file to catch an odd id first: the question line itself must be checked.
    path = tmp_path / "BFCL_v4_live_irrelevance.json"
    path.write_text(json.dumps(LIVE_IRRELEVANCE[0]) + "\n" + line_two + "\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=reason) as caught:
        load_bfcl(path)
    assert caught.value.row == 2 and caught.value.path == str(path)


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path: Path) -> None:
    path = tmp_path / "BFCL_v4_live_irrelevance.json"
    path.write_text("\n" + json.dumps(LIVE_IRRELEVANCE[0]) + "\n\n" + json.dumps(LIVE_IRRELEVANCE[1]) + "\n", encoding="utf-8")
    assert [case.metadata["line"] for case in load_bfcl(path).cases] == [2, 4]


def test_missing_live_answers_name_the_expected_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "live_multiple", LIVE_MULTIPLE)
    with pytest.raises(ConfigError, match="possible_answer"):
        load_bfcl(path)
    # answers elsewhere are taken from answers_path=
    elsewhere = tmp_path / "answers.jsonl"
    elsewhere.write_text(_jsonl(LIVE_MULTIPLE_ANSWERS), encoding="utf-8")
    assert len(load_bfcl(path, answers_path=elsewhere)) == 2


# --- grading ----------------------------------------------------------------------------


def test_live_simple_calls_are_graded(tmp_path: Path) -> None:
    dataset = load_bfcl(_write(tmp_path, "live_simple", LIVE_SIMPLE, LIVE_SIMPLE_ANSWERS))
    evaluator = FunctionCallMatch()
    table = dataset.case("live_simple_0-0-0")
    right = [{"name": "reserve_table", "arguments": json.dumps({"party_size": 4, "time": "7:30 pm"})}]  # seating optional
    assert run_evaluator(evaluator, right, table).passed is True
    wrong = [{"name": "reserve_table", "arguments": {"party_size": 5, "time": "19:30", "seating": "indoor"}}]
    result = run_evaluator(evaluator, wrong, table)
    assert result.passed is False and "party_size" in (result.reason or "")
    assert run_evaluator(evaluator, [{"name": "reserve_table", "arguments": {"party_size": 4, "time": "19:30", "seating": "outdoor"}}], table).passed is False

    notes = dataset.case("live_simple_1-1-0")  # the tool-safe name of a dotted function is accepted
    assert run_evaluator(evaluator, [{"name": "notes_append", "arguments": {"payload": "Buy oat milk"}}], notes).passed is True
    lamp = dataset.case("live_simple_2-2-0")  # nested accepted map, optional null
    nested = {"query": "lamps", "filters": {"colour": "Green", "max_price": None}}
    assert run_evaluator(evaluator, [{"inventory.search": nested}], lamp).passed is True
    assert run_evaluator(evaluator, [{"inventory.search": {"query": "lamp", "filters": {"colour": "red"}}}], lamp).passed is False


def test_a_call_on_live_irrelevance_is_wrong(tmp_path: Path) -> None:
    case = load_bfcl(_write(tmp_path, "live_irrelevance", LIVE_IRRELEVANCE)).case("live_irrelevance_0-0-0")
    evaluator = FunctionCallMatch()
    called = run_evaluator(evaluator, [{"name": "reserve_table", "arguments": {"party_size": 1, "time": "12:00"}}], case)
    assert called.passed is False and "no function fits" in (called.reason or "")
    assert run_evaluator(evaluator, [], case).passed is True


def test_any_call_on_live_relevance_is_right(tmp_path: Path) -> None:
    case = load_bfcl(_write(tmp_path, "live_relevance", LIVE_RELEVANCE)).case("live_relevance_1-1-0")
    evaluator = FunctionCallMatch()
    assert run_evaluator(evaluator, [{"name": "notes.append", "arguments": {"payload": "dentist, Friday"}}], case).passed is True
    assert run_evaluator(evaluator, [{"name": "reserve_table", "arguments": {}}], case).passed is True
    assert run_evaluator(evaluator, [], case).passed is False
