"""The JSONL format of recorded outcomes (model_tiers/providers/recorded.py): reading it
tolerantly, replaying a ladder from it, and converting RouteLLM's two CSV layouts to it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ValidationError

from tests.unit.replay_ladders import replay_registry
from tierflow.evals.datasets.cases import DatasetFormatError
from tierflow.evals.datasets.recorded_convert import convert_routellm_gsm8k, convert_routellm_mmlu, main
from tierflow.model_tiers import ConfigError, TierRegistry, estimate_tokens
from tierflow.model_tiers.ledger import CONFIDENCE_KEY
from tierflow.model_tiers.providers._tool_calling import messages_as_text
from tierflow.model_tiers.providers.recorded import (
    RecordedCase,
    RecordedLineError,
    RecordedOutcome,
    case_json,
    read_recorded,
    write_recorded,
)
from tierflow.model_tiers.providers.replay import RecordingMiss, replay_model_from_options
from tierflow.tools.datasets import dataset_file

SMALL, MID, BIG = "small-1b", "mid/model-8b", "big-model"
PARSER = "tierflow.agents.numbers:extract_final_number"
Q_EGGS = "Janet has 16 eggs.  She eats 3.\nHow many eggs are left?"
Q_PENS = "A pen costs $2. How much do 4 pens cost?"
MIXTRAL, GPT4 = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def eggs_case() -> dict:
    return {
        "id": "eggs", "input": Q_EGGS, "group": "arithmetic", "reference": 13, "source": "prod-log",
        "outcomes": {
            SMALL: {"answer": "16 - 3 = 12\n#### 12", "correct": False, "input_tokens": 41, "output_tokens": 9,
                    "cost_usd": 0.00001, "latency_s": 0.21, "confidence": 0.35},
            MID: {"answer": "She has 13 left. The answer is 13.", "correct": True, "latency_s": 0.8},
            BIG: {"answer": "13", "correct": True, "input_tokens": 40, "output_tokens": 2, "confidence": 0.97},
        },
    }


def pens_case() -> dict:
    return {"id": "pens", "input": Q_PENS, "outcomes": {SMALL: {"answer": None, "correct": None}, BIG: {"answer": "$8"}}}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "ladder.jsonl", [json.dumps(eggs_case()), "", json.dumps(pens_case())])


def prompt(question: str) -> list:
    return [SystemMessage("Solve the problem."), HumanMessage(f"Math word problem:\n<<<\n{question}\n>>>\n\nSolve it.")]


def options(path: Path, model: str, **extra: object) -> dict[str, object]:
    fields = {"solution": "response", "final_answer": "final_number", "correct": "correct"}
    return {"recording": str(path), "model": model, "final_number": PARSER, "fields": fields, **extra}


class Graded(BaseModel):
    solution: str
    final_answer: str
    correct: str


# --- the format ---------------------------------------------------------------------------


def test_format_round_trip_keeps_cases_models_in_ladder_order_and_extra_keys(recorded: Path, tmp_path: Path) -> None:
    file = read_recorded(recorded)
    assert file.errors == ()
    assert [c.id for c in file.cases] == ["eggs", "pens"] and file.lines == (1, 3)
    assert file.models == (SMALL, MID, BIG)  # first-seen order: the ladder, cheapest first
    eggs = file.cases[0]
    assert eggs.group == "arithmetic" and eggs.reference == 13 and eggs.model_extra == {"source": "prod-log"}
    assert eggs.outcomes[SMALL] == RecordedOutcome(
        answer="16 - 3 = 12\n#### 12", correct=False, input_tokens=41, output_tokens=9,
        cost_usd=0.00001, latency_s=0.21, confidence=0.35,
    )
    assert file.cases[1].outcomes[SMALL] == RecordedOutcome()
    assert file.index["Janet has 16 eggs. She eats 3. How many eggs are left?"] == 0
    again = tmp_path / "again.jsonl"
    assert write_recorded(again, file.cases) == 2
    assert read_recorded(again).cases == file.cases
    line = json.loads(case_json(file.cases[1]))
    assert list(line) == ["id", "input", "outcomes"]  # absent optional keys are left out
    assert line["outcomes"] == {SMALL: {}, BIG: {"answer": "$8"}}


def test_a_bad_line_is_collected_with_its_line_number_and_the_rest_is_read(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "log.jsonl", [
        json.dumps(eggs_case()),
        "{not json",
        "[1, 2]",
        json.dumps({"id": "x", "outcomes": {SMALL: {}}}),  # no input
        json.dumps({**pens_case(), "outcomes": {SMALL: {"confidence": 1.5}}}),
        json.dumps({**pens_case(), "outcomes": {SMALL: {"correct": "true"}}}),  # strict: no coercion
        json.dumps({**eggs_case(), "input": "another"}),  # duplicate id
        json.dumps(pens_case()),
    ])
    file = read_recorded(path)
    assert [c.id for c in file.cases] == ["eggs", "pens"] and file.lines == (1, 8)
    assert [e.line for e in file.errors] == [2, 3, 4, 5, 6, 7]
    reasons = [e.reason for e in file.errors]
    assert "not valid JSON" in reasons[0] and "expected a JSON object" in reasons[1]
    assert "input: Field required" in reasons[2]
    assert "confidence" in reasons[3] and "less than or equal to 1" in reasons[3]
    assert "correct" in reasons[4] and "duplicate id 'eggs' (first on line 1)" in reasons[5]
    assert all(isinstance(e, ConfigError) for e in file.errors)
    assert str(file.errors[0]).startswith(f"{path}, line 2: not valid JSON")
    with pytest.raises(RecordedLineError, match="line 2: not valid JSON") as caught:
        read_recorded(path, strict=True)
    assert caught.value.line == 2


def test_an_unknown_outcome_key_is_rejected_but_unknown_top_level_keys_are_kept(tmp_path: Path) -> None:
    typo = {**pens_case(), "id": "typo", "outcomes": {SMALL: {"answer": "1", "confidnce": 0.9}}}
    extra = {**pens_case(), "user": {"tenant": "acme"}, "contaminated": True}
    file = read_recorded(write_lines(tmp_path / "log.jsonl", [json.dumps(typo), json.dumps(extra)]))
    assert [e.line for e in file.errors] == [1]
    assert "unknown outcome key" in file.errors[0].reason and "confidnce" in file.errors[0].reason
    assert file.cases[0].model_extra == {"user": {"tenant": "acme"}, "contaminated": True}
    with pytest.raises(ValidationError):
        RecordedOutcome.model_validate({"answer": "1", "tokens": 3})
    with pytest.raises(ValidationError):
        RecordedCase.model_validate({"id": "e", "input": "q", "outcomes": {}})  # a case needs an outcome


def test_only_a_file_with_no_valid_line_or_an_unreadable_file_raises(tmp_path: Path) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", ["{}", "", "nope"])
    with pytest.raises(ConfigError, match=r"no valid recorded case .*2 bad lines.*line 1") as caught:
        read_recorded(bad)
    assert str(bad) in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read the recorded outcomes file"):
        read_recorded(tmp_path / "missing.jsonl")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(json.dumps(pens_case()).encode() + b"\n\xff\xfe{}\n")
    assert [e.line for e in read_recorded(mixed).errors] == [2]  # a mis-encoded line, not a lost file


# --- replaying a ladder from JSONL ----------------------------------------------------------


def registry(path: Path) -> TierRegistry:
    return replay_registry([("slm", options(path, SMALL), 1.0, 2.0), ("mid", options(path, MID), 3.0, 6.0),
                            ("frontier", options(path, BIG), 10.0, 30.0)])


def test_a_replay_tier_answers_from_jsonl_with_forced_structured_output(recorded: Path) -> None:
    reg = registry(recorded)
    assert reg.call("slm", prompt(Q_EGGS), schema=Graded).value == Graded(
        solution="16 - 3 = 12\n#### 12", final_answer="12", correct="false"
    )
    assert reg.call("mid", prompt(Q_EGGS), schema=Graded).value.model_dump() == {
        "solution": "She has 13 left. The answer is 13.", "final_answer": "13", "correct": "true",
    }
    # A null answer replays as empty text; an ungraded outcome as an empty "correct".
    assert reg.call("slm", [HumanMessage(f"Help: {Q_PENS} Thanks")], schema=Graded).value == Graded(
        solution="", final_answer="", correct=""
    )
    text = replay_model_from_options("frontier", options(recorded, BIG)).invoke(prompt(Q_EGGS))
    assert isinstance(text, AIMessage) and text.content == "13"
    assert text.response_metadata["replay_case"] == "eggs" and text.response_metadata["replay_row"] == 0


def test_token_usage_comes_from_the_record_when_present_else_it_is_estimated(recorded: Path) -> None:
    reg = registry(recorded)
    top = reg.call("frontier", prompt(Q_EGGS), schema=Graded)
    assert (top.usage.input_tokens, top.usage.output_tokens) == (40, 2)
    assert top.usage.cost_usd == pytest.approx((40 * 10 + 2 * 30) / 1e6)
    assert top.message.response_metadata["tokens_estimated"] is False
    messages = prompt(Q_EGGS)
    mid = reg.call("mid", messages, schema=Graded)  # no token counts recorded for this model
    assert mid.usage.input_tokens == estimate_tokens(messages_as_text(messages))
    assert mid.usage.output_tokens == estimate_tokens("She has 13 left. The answer is 13.")
    assert mid.message.response_metadata["tokens_estimated"] is True


def test_recorded_confidence_and_latency_surface_in_response_metadata(recorded: Path) -> None:
    small = replay_model_from_options("slm", options(recorded, SMALL)).invoke(prompt(Q_EGGS))
    assert small.response_metadata[CONFIDENCE_KEY] == 0.35
    assert small.response_metadata["replay_latency_s"] == 0.21
    mid = replay_model_from_options("mid", options(recorded, MID)).invoke(prompt(Q_EGGS))
    assert CONFIDENCE_KEY not in mid.response_metadata and mid.response_metadata["replay_latency_s"] == 0.8


def test_an_unknown_question_or_a_missing_outcome_is_a_recording_miss(recorded: Path) -> None:
    model = replay_model_from_options("slm", options(recorded, SMALL))
    with pytest.raises(RecordingMiss, match=r"no recorded answer .* 2 questions") as caught:
        model.invoke(prompt("How many legs does a spider have?"))
    assert str(recorded) in str(caught.value)
    with pytest.raises(RecordingMiss, match=r"case 'pens' .* no outcome of the model 'mid/model-8b'"):
        replay_model_from_options("mid", options(recorded, MID)).invoke(prompt(Q_PENS))
    with pytest.raises(ConfigError, match="no case of the recording has an outcome of the model 'other'"):
        replay_model_from_options("x", options(recorded, "other")).invoke(prompt(Q_EGGS))


def test_csv_only_options_are_refused_for_a_jsonl_recording(recorded: Path) -> None:
    with pytest.raises(ConfigError, match=r"\['response_column'\] apply to CSV recordings"):
        replay_model_from_options("slm", options(recorded, SMALL, response_column="x_response"))
    with pytest.raises(ConfigError, match=r"set options\.model"):
        replay_model_from_options("slm", options(recorded, ""))


# --- converting RouteLLM's CSVs -------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_contaminated(folder: Path, *prompts: str) -> None:
    lines = [json.dumps({"train_prompt": "t", "eval_prompt": p, "train_idx": 0, "eval_idx": 0}) for p in prompts]
    write_lines(folder / "contaminated_prompts.jsonl", lines)


def test_gsm8k_csv_converts_to_one_case_per_row_with_answers_grades_and_contamination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(
        tmp_path / "gsm8k" / "gsm8k_responses.csv",
        ["prompt", MIXTRAL, GPT4, f"{MIXTRAL}_response", f"{GPT4}_response"],
        [[Q_EGGS, "True", "True", "#### 13", "13 eggs."], [Q_PENS, "False", "True", "a lot", "The answer is $8."]],
    )
    write_contaminated(source.parent, Q_PENS)
    out = tmp_path / "out.jsonl"
    assert main(["routellm-gsm8k", str(source), str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"2 cases -> {out} (1 contaminated); accuracy: {MIXTRAL} 1/2 = 50.00%, {GPT4} 2/2 = 100.00%"
    )
    file = read_recorded(out)
    assert file.errors == () and file.models == (MIXTRAL, GPT4)
    eggs, pens = file.cases
    assert (eggs.id, eggs.input, eggs.reference, eggs.model_extra) == ("gsm8k-0", Q_EGGS, 13, {})
    assert eggs.outcomes[MIXTRAL] == RecordedOutcome(answer="#### 13", correct=True)
    assert (pens.id, pens.reference, pens.model_extra) == ("gsm8k-1", 8, {"contaminated": True})
    assert pens.outcomes[MIXTRAL] == RecordedOutcome(answer="a lot", correct=False)
    replayed = replay_model_from_options("slm", options(out, GPT4)).invoke(prompt(Q_PENS))
    assert replayed.content == "The answer is $8."


def test_mmlu_folder_or_one_file_converts_with_subject_groups_and_no_answers(tmp_path: Path) -> None:
    responses = tmp_path / "routellm_mmlu" / "responses"
    header = ["prompt", MIXTRAL, GPT4]
    write_csv(responses / "mmlu_astronomy.csv", header, [["Why is the sky blue?\nA. x\nAnswer:", "False", "True"]])
    write_csv(responses / "mmlu_anatomy.csv", header, [["Q1?", "True", "True"], ["Q2?", "False", "False"]])
    write_contaminated(responses.parent, "Q2?")  # RouteLLM keeps it above responses/
    cases = convert_routellm_mmlu(responses)
    assert [(c.id, c.group) for c in cases] == [
        ("mmlu-anatomy-0", "anatomy"), ("mmlu-anatomy-1", "anatomy"), ("mmlu-astronomy-0", "astronomy"),
    ]
    assert cases[0].outcomes == {MIXTRAL: RecordedOutcome(correct=True), GPT4: RecordedOutcome(correct=True)}
    assert [bool((c.model_extra or {}).get("contaminated")) for c in cases] == [False, True, False]
    one = convert_routellm_mmlu(responses / "mmlu_astronomy.csv")
    assert [(c.id, c.outcomes[GPT4].correct, c.outcomes[GPT4].answer) for c in one] == [("mmlu-astronomy-0", True, None)]
    out = tmp_path / "mmlu.jsonl"
    assert main(["routellm-mmlu", str(responses), str(out)]) == 0
    assert [c.id for c in read_recorded(out).cases] == [c.id for c in cases]


@pytest.mark.parametrize(
    ("layout", "rows", "message"),
    [
        ("routellm-gsm8k", [["q", "yes", "True", "a", "b"]], "must be True or False, got 'yes'"),
        ("routellm-gsm8k", None, "not found at"),
        ("routellm-mmlu", None, "not found at"),
    ],
)
def test_converter_errors_are_one_line_on_stderr_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str, rows: list[list[str]] | None, message: str
) -> None:
    source = tmp_path / "src.csv"
    if rows is not None:
        write_csv(source, ["prompt", MIXTRAL, GPT4, f"{MIXTRAL}_response", f"{GPT4}_response"], rows)
    out = tmp_path / "out.jsonl"
    assert main([layout, str(source), str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_gsm8k_layout_needs_response_columns(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "mmlu_x.csv", ["prompt", MIXTRAL], [["q", "True"]])
    with pytest.raises(DatasetFormatError, match="routellm-mmlu layout"):
        convert_routellm_gsm8k(source)


def test_the_real_routellm_gsm8k_even_half_converts_to_660_cases(tmp_path: Path) -> None:
    # $TIERFLOW_DATASETS, else ../shared/datasets beside the repository (tools/datasets.py).
    source = dataset_file("routellm_gsm8k", "gsm8k_responses_even.csv")
    out = tmp_path / "gsm8k_even.jsonl"
    assert main(["routellm-gsm8k", str(source), str(out)]) == 0
    file = read_recorded(out)
    assert len(file.cases) == 660 and file.errors == () and file.models == (MIXTRAL, GPT4)
    assert sum(c.outcomes[MIXTRAL].correct is True for c in file.cases) == 419
    assert sum(c.outcomes[GPT4].correct is True for c in file.cases) == 566
    assert sum(bool((c.model_extra or {}).get("contaminated")) for c in file.cases) == 6
    with source.open(encoding="utf-8", newline="") as handle:
        first = next(csv.DictReader(handle))
    reply = replay_model_from_options("frontier", options(out, GPT4)).invoke(prompt(first["prompt"]))
    assert reply.content == first[f"{GPT4}_response"]


def test_the_correct_source_also_reads_a_csv_recordings_grade_column(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "rec.csv", ["prompt", MIXTRAL, f"{MIXTRAL}_response"], [[Q_EGGS, "False", "#### 12"]]
    )
    reply = replay_model_from_options("slm", options(source, MIXTRAL)).with_structured_output(Graded).invoke(prompt(Q_EGGS))
    assert reply == Graded(solution="#### 12", final_answer="12", correct="false")
