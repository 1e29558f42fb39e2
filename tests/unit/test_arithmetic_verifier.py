"""The deterministic math verifier: hand-checked solutions (right and wrong, in the formats
models write), the safe evaluator, the score, and how well it separates Mixtral's right and
wrong answers on the real RouteLLM GSM8K file."""

from __future__ import annotations

import csv

import pytest

from tierflow.agents.arithmetic import (
    SCORE_PENALTIES,
    UnsafeExpression,
    check_solution,
    counted_noun,
    evaluate_expression,
    find_statements,
    question_numbers_used,
    truncation_reason,
)
from tierflow.agents.numbers import extract_final_number
from tierflow.tools.datasets import dataset_file


def claims(solution: str) -> list[tuple[float, float, bool]]:
    return [(s.computed, s.claimed, s.ok) for s in find_statements(solution)]


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        ("Half of them: <<48/2=24>>24 eggs.", [(24, 24, True)]),
        ("Half of them: <<48/2=25>>25 eggs.", [(24, 25, False)]),
        ("She pays 3 * $4 = $12 in total.", [(12, 12, True)]),
        ("She pays 3 * $4 = $13 in total.", [(12, 13, False)]),
        ("Charleston has 20 x 4 = 80 sheep.", [(80, 80, True)]),
        ("They sold 1,200 + 300 = 1,500 tickets.", [(1500, 1500, True)]),
        ("They sold 1,200 + 300 = 1,400 tickets.", [(1500, 1400, False)]),
        ("Together: 12 + 15 = 27.", [(27, 27, True)]),
        ("Discount: 20% of 50 = 10 dollars.", [(10, 10, True)]),
        ("The share is (12 / 20) x 100 = 60%.", [(60, 60, True)]),
        ("The share is (12 / 20) x 100 = 55%.", [(60, 55, False)]),
        ("After the discount: 120 - 25% = 90.", [(90, 90, True)]),
        ("Each gets 10 / 3 = 3.33 liters.", [(10 / 3, 3.33, True)]),
        ("160 (Toulouse) + 80 (Charleston) + 20 (Seattle) = 260 sheep", [(260, 260, True)]),
        ("He drove 15 miles + 120 miles = 135 miles.", [(135, 135, True)]),
        ("Cost: $10.5 - $3 = $7.5 a year.", [(7.5, 7.5, True)]),
        ("Area: \\frac{48}{2} = 24 and 4 \\* 12 = 48.", [(24, 24, True), (48, 48, True)]),
        ("Total 5 \\times 4 = 20.", [(20, 20, True)]),
        ("5 * 4 = 20 * 2 = 40 apples", [(40, 40, True)]),
        ("Number of pieces = 4 feet / 0.5 feet\n= 8", [(8, 8, True)]),
        ("It costs 2 times 6 = 12 dollars.", [(12, 12, True)]),
    ],
)
def test_statements_recompute(solution: str, expected: list[tuple[float, float, bool]]) -> None:
    found = claims(solution)
    assert len(found) == len(expected)
    for (computed, claimed, ok), (want_computed, want_claimed, want_ok) in zip(found, expected, strict=True):
        assert computed == pytest.approx(want_computed)
        assert claimed == pytest.approx(want_claimed)
        assert ok is want_ok


@pytest.mark.parametrize(
    "solution",
    [
        "2 hours = 120 minutes",  # a conversion, not arithmetic
        "Let x be his age: 2x + 3 = 15",  # algebra with a variable
        "4 feet + 3 inches = 51 inches",  # mixed units cannot be recomputed without converting
        "He had 3 dozen * 1.5 = 54 seeds",  # "dozen" as multiplier or unit: ambiguous
        "Then 10x + x = 11x = 88,000",
        "Step 1: the train leaves at 2:30 pm",
        "Mr. Ruther had 12.8 / (1 - 3/5) = 12.8 / 2/5 = 32 hectares",  # "2/5" binds first
    ],
)
def test_what_cannot_be_read_with_confidence_is_not_failed(solution: str) -> None:
    assert all(s.ok for s in find_statements(solution))


def test_a_continued_chain_is_checked_link_by_link() -> None:
    found = claims("x = 20 / 4 = 5 and 5 * 3 = 14")
    assert [(c, ok) for c, _, ok in found] == [(5, True), (15, False)]


def test_a_right_solution_passes_with_full_score() -> None:
    question = "Toulouse has twice as many sheep as Charleston. Charleston has 4 times as many sheep as Seattle. How many sheep do they have together if Seattle has 20 sheep?"
    solution = (
        "Seattle has 20 sheep, so Charleston has 20 x 4 = <<20*4=80>>80 sheep.\n"
        "Toulouse has 80 x 2 = <<80*2=160>>160 sheep.\n"
        "Together, they have 20 + 80 + 160 = <<20+80+160=260>>260 sheep.\n#### 260"
    )
    report = check_solution(solution, "260", question)
    assert report.passed and report.reason is None
    assert report.checked == 3  # the notes and the prose restating them are one statement each
    assert report.final_matches_last is True
    assert report.counted == "sheep"
    assert report.score == 1.0


def test_a_wrong_calculation_fails_with_a_reason_a_model_can_act_on() -> None:
    report = check_solution("Judy earns 5 * 75 + 120 = 795 dollars.\n#### 795", "795", "How much does Judy earn?")
    assert not report.passed
    assert report.reason == "'5 * 75 + 120 = 795' is wrong: 5 * 75 + 120 = 495, not 795; redo the arithmetic"
    assert report.recompute_fraction == 0.0 and report.score == 0.0


@pytest.mark.parametrize(
    ("final_answer", "reason"),
    [
        ("18 apples", "the final answer '18 apples' is not a number"),
        ("", "there is no final answer"),
        (None, "there is no final answer"),
    ],
)
def test_the_final_answer_must_be_a_number(final_answer: str | None, reason: str) -> None:
    report = check_solution("3 + 15 = 18", final_answer)
    assert report.reason is not None and report.reason.startswith(reason)
    assert report.score == 0.0


@pytest.mark.parametrize(
    ("solution", "cut_off"),
    [
        ("Wendi gives 15 + 25 = <<15+2", True),
        ("The house is worth 80,000 + 50,000 = $<<80000+50000=130000>>130,00", True),
        ("So the total is 4 +", True),
        ("So the total is 4 + 5 = 9.", False),
        ("It sold 130,000 copies", False),
    ],
)
def test_truncation(solution: str, cut_off: bool) -> None:
    assert (truncation_reason(solution) is not None) is cut_off
    if cut_off:
        assert "write the complete solution" in (check_solution(solution, "9").reason or "")


@pytest.mark.parametrize(
    ("question", "noun"),
    [
        ("How many sheep do they have together?", "sheep"),
        ("How many more students like music than art?", "students"),
        ("How many hours does the trip take?", None),
        ("How many dollars does she save?", None),
        ("How much money does he have left?", None),
        ("What is the total weight?", None),
    ],
)
def test_counted_noun(question: str, noun: str | None) -> None:
    assert counted_noun(question) == noun


def test_a_fraction_for_a_count_fails_but_a_fraction_for_a_measure_passes() -> None:
    counting = check_solution("25 / 2 = 12.5", "12.5", "How many students are left in the class?")
    assert counting.reason is not None and "how many students, a count" in counting.reason
    measuring = check_solution("5 / 2 = 2.5", "2.5", "How many hours does the trip take?")
    assert measuring.passed and measuring.score == 1.0


def test_soft_signals_lower_the_score_but_do_not_fail() -> None:
    not_last = check_solution("12 - 4 = 8 apples are eaten, so 4 are left", "4", "She had 12 apples and ate 8.")
    assert not_last.passed and not_last.final_matches_last is False
    assert not_last.score == pytest.approx(1 - SCORE_PENALTIES["final_not_last_result"])
    nothing = check_solution("She has twelve left.", "12", "")
    assert nothing.passed and nothing.score == pytest.approx(1 - SCORE_PENALTIES["no_arithmetic_to_check"])
    unused = check_solution("3 + 4 = 7", "7", "Tom has 3 red, 4 blue and 5 green balls. How many are red or blue?")
    assert unused.question_coverage == pytest.approx(2 / 3)
    assert unused.score == pytest.approx(1 - SCORE_PENALTIES["question_numbers_unused"] / 3)


def test_question_numbers_used_accepts_a_percentage_as_a_fraction() -> None:
    assert question_numbers_used("It drops by 30% from 180.", "180 * 0.3 = 54") == 1.0
    assert question_numbers_used("No numbers here.", "1 + 1 = 2") == 1.0


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "(1).__class__", "2 ** 1000", "1 / 0", "a + 1", "[1, 2]", "1 if 2 else 3"],
)
def test_the_evaluator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(UnsafeExpression):
        evaluate_expression(expression)


def test_the_evaluator_reads_percentages_in_each_sense() -> None:
    assert evaluate_expression("120 - pct(25)") == pytest.approx(119.75)
    assert evaluate_expression("120 - pct(25)", percent="relative") == pytest.approx(90)
    assert evaluate_expression("pct(60)", percent="raw") == 60


def test_on_the_real_file_the_verifier_flags_mostly_wrong_mixtral_answers_and_few_right_ones() -> None:
    """Measured on the visible even half (660 rows): a fail predicts that Mixtral's recorded
    answer is wrong. Measured when written: precision 73/75 = 97%, recall 73/241 = 30%;
    GPT-4's 566 right answers: no false alarm."""
    weak, strong = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    with dataset_file("routellm_gsm8k", "gsm8k_responses_even.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts = {"tp": 0, "fp": 0, "fn": 0, "strong_false_alarms": 0}
    for row in rows:
        for model in (weak, strong):
            response = row[f"{model}_response"]
            number = extract_final_number(response)
            final = "" if number is None else f"{number:g}" if not number.is_integer() else str(int(number))
            failed = not check_solution(response, final, row["prompt"]).passed
            right = row[model] == "True"
            if model == strong:
                counts["strong_false_alarms"] += failed and right
            elif failed:
                counts["tp" if not right else "fp"] += 1
            elif not right:
                counts["fn"] += 1
    precision = counts["tp"] / (counts["tp"] + counts["fp"])
    recall = counts["tp"] / (counts["tp"] + counts["fn"])
    assert precision >= 0.9, counts
    assert recall >= 0.25, counts
    assert counts["strong_false_alarms"] <= 2, counts
