"""Evaluators on hand-checked cases: labels and macro-F1, slot F1, BFCL-style call
matching, tau2 DB/communicate checks, numeric answers, and the harness rule that an
evaluator's exception is recorded as a failed result."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from tierflow.evals.datasets import Case, load_dataset
from tierflow.evals.datasets.bfcl import ExpectedCall, FunctionCallCase, FunctionCallExpected, FunctionCallInputs, FunctionDoc
from tierflow.evals.datasets.gsm8k import MathCase, MathExpected, MathInputs, RecordedAnswer
from tierflow.evals.datasets.intents import IntentExpected, IntentInputs
from tierflow.evals.datasets.tau2 import RetailTaskCase, RetailTaskExpected, RetailTaskInputs, UserInstructions
from tierflow.evals.evaluators.base import EvaluationResult, run_evaluator
from tierflow.evals.evaluators.function_calls import FunctionCall, FunctionCallMatch, match_function_calls, parse_function_calls
from tierflow.evals.evaluators.labels import ExactLabel, label_match, macro_f1
from tierflow.evals.evaluators.numeric import MathAnswerCorrect, numeric_match
from tierflow.evals.evaluators.retail import RetailOutcome, RetailTaskSuccess, communicate_info_check, db_state_match
from tierflow.evals.evaluators.slots import SlotExactMatch, normalise_slot_value, slot_f1, slot_match
from tierflow.model_tiers.errors import ConfigError

# --- run_evaluator ----------------------------------------------------------------------


class _Exploding:
    name = "exploding"

    def evaluate(self, output: Any, case: Any) -> EvaluationResult:
        raise KeyError("gold_field")


class _WrongType:
    name = "wrong_type"

    def evaluate(self, output: Any, case: Any) -> Any:
        return 1.0


def test_an_evaluator_that_raises_is_recorded_as_failed() -> None:
    result = run_evaluator(_Exploding(), "output", None)
    assert result.name == "exploding"
    assert result.passed is False and result.score == 0.0
    assert "KeyError" in (result.reason or "") and "gold_field" in result.details["error"]
    assert "raise KeyError" in result.details["traceback"]


def test_a_wrong_return_type_is_recorded_as_failed() -> None:
    result = run_evaluator(_WrongType(), "output", None)
    assert result.passed is False and "float" in (result.reason or "")


def test_a_plain_function_is_an_evaluator() -> None:
    def always(output: Any, case: Any) -> EvaluationResult:
        return EvaluationResult(name="always", score=1.0, passed=True)

    assert run_evaluator(always, None, None).passed is True


# --- labels -----------------------------------------------------------------------------


def test_label_match() -> None:
    assert label_match("card_arrival", " card_arrival\n").passed is True
    assert label_match("card_arrival", "Card_Arrival").passed is False
    missing = label_match("card_arrival", None)
    assert missing.passed is False and "None" in (missing.reason or "")
    case = Case[IntentInputs, IntentExpected](id="c", inputs=IntentInputs(text="t"), expected=IntentExpected(label="oos", out_of_scope=True))
    assert run_evaluator(ExactLabel(), "oos", case).passed is True


def test_macro_f1_hand_computed() -> None:
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("c", None)]
    # a: P=1 R=1/2 F=2/3; b: P=1/2 R=1 F=2/3; c: F=0  -> macro 4/9
    result = macro_f1(pairs)
    assert result.score == pytest.approx(4 / 9)
    assert result.details["accuracy"] == pytest.approx(0.5)
    assert result.details["per_label"]["b"]["precision"] == pytest.approx(0.5)
    assert result.details["per_label"]["c"]["support"] == 1
    restricted = macro_f1(pairs, labels=["a", "b", "z"])
    assert restricted.score == pytest.approx(2 / 3)
    assert restricted.details["skipped_labels"] == ["z"]
    assert macro_f1([]).passed is None


# --- slots ------------------------------------------------------------------------------


def test_slot_value_normalisation() -> None:
    assert normalise_slot_value("  7 p.m. ") == "7 p.m"
    assert normalise_slot_value('"Smith,"') == "smith"
    assert normalise_slot_value("5  Adults") == "5 adults"
    assert normalise_slot_value(None) == "" and normalise_slot_value(4) == "4"


def test_slot_match_counts_wrong_missing_and_extra() -> None:
    gold = {"people": "4 people", "time": "7 p.m."}
    predicted = {"people": " 4 People ", "time": "8 pm", "date": "tomorrow", "last_name": None}
    result = slot_match(gold, predicted)
    # tp=1 (people); time wrong: fp+fn; date extra: fp -> P=1/3 R=1/2 F=0.4
    assert result.passed is False
    assert result.score == pytest.approx(0.4)
    assert result.details["per_slot"]["time"] == {"tp": 0, "fp": 1, "fn": 1}
    assert result.details["per_slot"]["date"] == {"tp": 0, "fp": 1, "fn": 0}
    assert result.details["per_slot"]["last_name"] == {"tp": 0, "fp": 0, "fn": 0}
    assert slot_match({}, {"people": ""}).passed is True and slot_match({}, {}).score == 1.0


def test_slot_f1_micro_and_macro() -> None:
    pairs = [
        ({"people": "2"}, {"people": "2"}),
        ({"people": "3", "time": "6pm"}, {"people": "3"}),
        ({}, {"time": "noon"}),
    ]
    result = slot_f1(pairs)
    # people: tp=2 -> F=1; time: fp=1 fn=1 -> F=0; micro: tp=2 fp=1 fn=1 -> F=2/3
    assert result.score == pytest.approx(2 / 3)
    assert result.details["macro_f1"] == pytest.approx(0.5)
    assert result.details["exact_match"] == pytest.approx(1 / 3)


def test_slot_evaluator_on_a_real_restaurant8k_case() -> None:
    case = load_dataset("restaurant8k").cases[4]  # "6 a.m." (no startIndex in the file)
    assert run_evaluator(SlotExactMatch(), {"time": "6 a.m"}, case).passed is True
    assert run_evaluator(SlotExactMatch(), {"time": "6 a.m.", "people": "6"}, case).passed is False
    broken = run_evaluator(SlotExactMatch(), "6 a.m.", case)
    assert broken.passed is False and "mapping" in (broken.reason or "")


# --- function calls ---------------------------------------------------------------------


def _call(name: str, **arguments: Any) -> FunctionCall:
    return FunctionCall(name=name, arguments=arguments)


def _expected(name: str, **accepted: list[Any]) -> ExpectedCall:
    return ExpectedCall(name=name, accepted_arguments=accepted)


AREA_DOC = FunctionDoc(
    name="geometry.area",
    parameters={
        "type": "dict",
        "properties": {"base": {"type": "integer"}, "height": {"type": "float"}, "unit": {"type": "string"}},
        "required": ["base", "height"],
    },
)
AREA = _expected("geometry.area", base=[10], height=[5.0], unit=["units", ""])


def test_optional_argument_may_be_omitted_or_given_an_accepted_value() -> None:
    assert match_function_calls([_call("geometry.area", base=10, height=5.0)], [AREA], [AREA_DOC]).passed
    assert match_function_calls([_call("geometry.area", base=10, height=5.0, unit="Units")], [AREA], [AREA_DOC]).passed
    wrong = match_function_calls([_call("geometry.area", base=10, height=5.0, unit="cm")], [AREA], [AREA_DOC])
    assert wrong.passed is False and "'unit'" in (wrong.reason or "")


def test_int_and_float_are_the_same_number_but_bool_is_not() -> None:
    assert match_function_calls([_call("geometry.area", base=10.0, height=5)], [AREA], [AREA_DOC]).passed
    assert not match_function_calls([_call("geometry.area", base=10, height=5.5)], [AREA], [AREA_DOC]).passed
    flag = _expected("f", enabled=[True])
    assert match_function_calls([_call("f", enabled=True)], [flag]).passed
    assert not match_function_calls([_call("f", enabled=1)], [flag]).passed
    one = _expected("f", n=[1])
    assert not match_function_calls([_call("f", n=True)], [one]).passed


def test_missing_required_and_unexpected_arguments_fail() -> None:
    missing = match_function_calls([_call("geometry.area", base=10)], [AREA], [AREA_DOC])
    assert missing.passed is False and "missing" in (missing.reason or "") and "height" in (missing.reason or "")
    extra = match_function_calls([_call("geometry.area", base=10, height=5, colour="red")], [AREA], [AREA_DOC])
    assert extra.passed is False and "unexpected argument 'colour'" in (extra.reason or "")
    # required by the answer (no "" in its list) even without a function doc
    assert not match_function_calls([_call("g")], [_expected("g", x=[1])]).passed


def test_wrong_function_name_fails_and_underscored_dots_pass() -> None:
    assert not match_function_calls([_call("geometry.volume", base=10, height=5)], [AREA], [AREA_DOC]).passed
    assert match_function_calls([_call("geometry_area", base=10, height=5)], [AREA], [AREA_DOC]).passed


def test_strings_compare_as_bfcl_does() -> None:
    city = _expected("weather", city=["New York, NY"], date=["2024-04-01"])
    assert match_function_calls([_call("weather", city="new york ny", date="2024/04/01")], [city]).passed
    assert not match_function_calls([_call("weather", city="Newark, NJ", date="2024-04-01")], [city]).passed


def test_lists_and_nested_dicts() -> None:
    expected = _expected(
        "query",
        ids=[[1, 2, 3]],
        tags=[["Red", "blue"]],
        conditions=[{"department": ["Science"], "school": ["Bluebird High School", "Bluebird HS"], "year": ["", 2024]}],
    )
    good = _call("query", ids=[1, 2, 3.0], tags=["red", "Blue"], conditions={"department": "science", "school": "Bluebird HS"})
    assert match_function_calls([good], [expected]).passed
    assert not match_function_calls([_call("query", ids=[3, 2, 1], tags=["red", "blue"], conditions={"department": "Science", "school": "Bluebird HS"})], [expected]).passed
    extra_key = _call("query", ids=[1, 2, 3], tags=["red", "blue"], conditions={"department": "Science", "school": "Bluebird HS", "x": 1})
    assert not match_function_calls([extra_key], [expected]).passed
    missing_key = _call("query", ids=[1, 2, 3], tags=["red", "blue"], conditions={"school": "Bluebird HS"})
    assert not match_function_calls([missing_key], [expected]).passed


def test_parallel_calls_match_in_any_order_one_to_one() -> None:
    expected = [_expected("play", artist=["Taylor Swift"], duration=[20]), _expected("play", artist=["Maroon 5"], duration=[15])]
    in_order = [_call("play", artist="Taylor Swift", duration=20), _call("play", artist="Maroon 5", duration=15)]
    assert match_function_calls(in_order, expected).passed
    assert match_function_calls(list(reversed(in_order)), expected).passed
    twice = [_call("play", artist="Taylor Swift", duration=20)] * 2
    assert not match_function_calls(twice, expected).passed
    assert not match_function_calls(in_order[:1], expected).passed
    assert not match_function_calls(in_order + in_order[:1], expected).passed


def test_parallel_matching_is_not_greedy() -> None:
    # Call 0 fits both expected calls, call 1 only the first: a greedy matcher that gives
    # expected[0] to call 0 would fail; the one-to-one assignment exists and must be found.
    expected = [_expected("f", x=[1, 2]), _expected("f", x=[1])]
    calls = [_call("f", x=1), _call("f", x=2)]
    result = match_function_calls(calls, expected)
    assert result.passed is True and result.details["assignment"] == [1, 0]


def test_irrelevance_passes_only_without_a_call() -> None:
    assert match_function_calls([], []).passed is True
    made = match_function_calls([_call("determine_body_mass_index", weight=1, height=2)], [])
    assert made.passed is False and "no function fits" in (made.reason or "")


def test_output_formats_are_parsed() -> None:
    openai_style = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": json.dumps({"x": 1})}}]
    assert parse_function_calls(openai_style) == [_call("f", x=1)]
    assert parse_function_calls({"f": {"x": 1}}) == [_call("f", x=1)]
    assert parse_function_calls({"name": "f", "args": {"x": 1}}) == [_call("f", x=1)]
    message = AIMessage(content="", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "1"}])
    assert parse_function_calls(message) == [_call("f", x=1)]
    assert parse_function_calls(AIMessage(content="I cannot help with that.")) == []
    assert parse_function_calls(None) == []


def _bfcl_case(expected: list[ExpectedCall], functions: list[FunctionDoc]) -> FunctionCallCase:
    return FunctionCallCase(
        id="t", inputs=FunctionCallInputs(messages=[], functions=functions),
        expected=FunctionCallExpected(category="simple_python", calls=expected),
    )


def test_unreadable_output_is_a_failed_evaluation() -> None:
    case = _bfcl_case([AREA], [AREA_DOC])
    result = run_evaluator(FunctionCallMatch(), "geometry.area(base=10, height=5)", case)
    assert result.passed is False and "text" in (result.reason or "")
    bad_json = [{"name": "geometry.area", "arguments": "{base: 10"}]
    assert run_evaluator(FunctionCallMatch(), bad_json, case).passed is False


def test_real_bfcl_cases() -> None:
    simple = load_dataset("bfcl_simple_python").case("simple_python_0")
    evaluator = FunctionCallMatch()
    assert run_evaluator(evaluator, [{"name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5}}], simple).passed
    assert not run_evaluator(evaluator, [{"name": "calculate_triangle_area", "arguments": {"base": 5, "height": 10}}], simple).passed
    parallel = load_dataset("bfcl_parallel").case("parallel_0")
    calls = [{"spotify.play": {"artist": "maroon 5", "duration": 15}}, {"spotify.play": {"artist": "Taylor Swift", "duration": 20}}]
    assert run_evaluator(evaluator, calls, parallel).passed
    irrelevant = load_dataset("bfcl_irrelevance").case("irrelevance_0")
    assert run_evaluator(evaluator, [], irrelevant).passed
    assert not run_evaluator(evaluator, [{"determine_body_mass_index": {"weight": 10, "height": 5}}], irrelevant).passed


# --- tau2 retail ------------------------------------------------------------------------


def test_db_state_match() -> None:
    assert db_state_match("abc", "abc").passed is True
    assert db_state_match("abc", "abd").passed is False
    none = db_state_match("abc", None)
    assert none.passed is False and "no final database" in (none.reason or "")


def test_communicate_info_check_strips_commas_and_ignores_case() -> None:
    texts = ["Your refund of $8,276.23 is on its way.", "There are TEN options, 10 in total."]
    assert communicate_info_check(texts, ["8276.23", "10"]).passed is True
    assert communicate_info_check(texts, []).passed is True
    missing = communicate_info_check(texts, ["54.04"])
    assert missing.passed is False and missing.details["missing"] == ["54.04"]


def _retail_case(communicate: list[str]) -> RetailTaskCase:
    return RetailTaskCase(
        id="tau2_retail-x",
        inputs=RetailTaskInputs(task_id="x", customer_request="r", instructions=UserInstructions(reason_for_call="r")),
        expected=RetailTaskExpected(actions=[], communicate_info=communicate),
    )


def test_retail_task_success_is_the_product_of_the_checks() -> None:
    seen: list[str] = []

    def gold_hash(case: RetailTaskCase) -> str:
        seen.append(case.id)
        return "h1"

    evaluator = RetailTaskSuccess(gold_db_hash=gold_hash)
    case = _retail_case(["10"])
    assert run_evaluator(evaluator, RetailOutcome(db_hash="h1", agent_messages=["we have 10"]), case).passed is True
    assert seen == ["tau2_retail-x"]
    wrong_db = run_evaluator(evaluator, RetailOutcome(db_hash="h2", agent_messages=["we have 10"]), case)
    assert wrong_db.passed is False and "DB:" in (wrong_db.reason or "")
    silent = run_evaluator(evaluator, RetailOutcome(db_hash="h1", agent_messages=["done"]), case)
    assert silent.passed is False and "COMMUNICATE" in (silent.reason or "")
    db_only = RetailTaskSuccess(gold_db_hash=gold_hash, checks=("DB",))
    assert run_evaluator(db_only, RetailOutcome(db_hash="h1"), case).passed is True
    stopped = RetailOutcome(db_hash="h1", agent_messages=["10"], terminated_normally=False)
    assert run_evaluator(evaluator, stopped, case).passed is False


def test_retail_task_success_refuses_checks_it_cannot_run() -> None:
    with pytest.raises(ConfigError, match="NL_ASSERTION"):
        RetailTaskSuccess(gold_db_hash=lambda case: "h", checks=("DB", "NL_ASSERTION"))


def test_a_failing_gold_replay_is_recorded_not_raised() -> None:
    def broken_replay(case: RetailTaskCase) -> str:
        raise RuntimeError("db.json missing")

    result = run_evaluator(RetailTaskSuccess(gold_db_hash=broken_replay), RetailOutcome(db_hash="h"), _retail_case([]))
    assert result.passed is False and "db.json missing" in (result.reason or "")


# --- numeric ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicted", "expected", "passed"),
    [
        ("18.0", 18, True),
        ("18", "18.0", True),
        ("$1,234.50", 1234.5, True),
        ("The answer is 18.", "18", True),
        ("9 * 2 = <<9*2=18>>18\n#### 18", 18, True),
        (18.0000001, 18, True),
        ("17", 18, False),
        ("no idea", 18, False),
        (None, 18, False),
    ],
)
def test_numeric_match(predicted: Any, expected: Any, passed: bool) -> None:
    assert numeric_match(predicted, expected).passed is passed


def test_numeric_match_tolerance_and_bad_reference() -> None:
    assert numeric_match("18.4", 18, abs_tol=0.5).passed is True
    assert numeric_match("18.4", 18).passed is False
    broken = run_evaluator(lambda output, case: numeric_match(output, "eighteen"), "18", None)
    assert broken.passed is False and "not a number" in (broken.reason or "")


def test_math_answer_uses_recorded_grades_then_the_reference() -> None:
    weak = RecordedAnswer(model="weak", response="#### 17", correct=False, final_number=17.0)
    strong = RecordedAnswer(model="strong", response="It is 18.", correct=True, final_number=18.0)
    case = MathCase(id="m", inputs=MathInputs(question="q"), expected=MathExpected(weak=weak, strong=strong, reference_answer=18.0))
    evaluator = MathAnswerCorrect()
    assert run_evaluator(evaluator, "It is 18.", case).passed is True
    assert run_evaluator(evaluator, "#### 17", case).passed is False
    assert run_evaluator(evaluator, "so \\boxed{18}", case).passed is True
    unjudged = case.model_copy(update={"expected": MathExpected(weak=weak, strong=weak, reference_answer=None)})
    assert run_evaluator(evaluator, "18", unjudged).passed is None


def test_recorded_grades_reproduce_the_published_accuracies() -> None:
    dataset = load_dataset("routellm_gsm8k")
    evaluator = MathAnswerCorrect()
    weak = sum(bool(run_evaluator(evaluator, case.expected.weak.response, case).passed) for case in dataset.cases)
    strong = sum(bool(run_evaluator(evaluator, case.expected.strong.response, case).passed) for case in dataset.cases)
    assert (weak, strong) == (415, 562)
