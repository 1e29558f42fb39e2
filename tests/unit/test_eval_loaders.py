"""Eval datasets: the containers (ids, sampling, JSONL round trip), path resolution, and
each loader on the real shared files (counts from each dataset's SOURCE.md) and on small
hand-written files for the format quirks."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from tierflow.agents.numbers import extract_final_number, parse_number
from tierflow.evals.datasets import (
    DATASETS_ENV,
    Case,
    Dataset,
    DatasetFormatError,
    DatasetSource,
    datasets_root,
    load_dataset,
    resolve_dataset_path,
)
from tierflow.evals.datasets.bfcl import load_bfcl
from tierflow.evals.datasets.gsm8k import load_routellm_gsm8k
from tierflow.evals.datasets.intents import IntentDataset, IntentExpected, IntentInputs, by_label, load_banking77, load_clinc150
from tierflow.evals.datasets.slots import SlotDataset, load_restaurant8k
from tierflow.evals.datasets.tau2 import load_tau2_retail
from tierflow.model_tiers.errors import ConfigError

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"


def _intent_dataset(n: int, labels: int = 4) -> IntentDataset:
    cases = [
        Case[IntentInputs, IntentExpected](
            id=f"case-{i:03d}", inputs=IntentInputs(text=f"text {i}"), expected=IntentExpected(label=f"l{i % labels}")
        )
        for i in range(n)
    ]
    return IntentDataset(name="toy", cases=cases, source=DatasetSource(path="toy.csv", format="toy"))


# --- containers -------------------------------------------------------------------------


def test_sampling_is_deterministic_nested_and_seeded() -> None:
    dataset = _intent_dataset(200)
    first = [case.id for case in dataset.sample(20).cases]
    again = [case.id for case in dataset.sample(20, seed=0).cases]
    assert first == again
    assert len(first) == 20
    assert set(first) <= {case.id for case in dataset.sample(40).cases}
    assert first != [case.id for case in dataset.sample(20, seed=1).cases]
    # kept in source order
    assert first == sorted(first)


def test_stratified_sample_takes_every_label_before_any_twice() -> None:
    dataset = _intent_dataset(200, labels=8)
    sample = dataset.sample(8, stratify=by_label)
    assert Counter(case.expected.label for case in sample.cases) == Counter({f"l{i}": 1 for i in range(8)})
    proportional = dataset.sample(40, stratify=by_label)
    assert set(Counter(case.expected.label for case in proportional.cases).values()) == {5}


def test_sample_limits() -> None:
    dataset = _intent_dataset(10)
    assert len(dataset.sample(None)) == 10
    assert len(dataset.sample(50)) == 10
    assert len(dataset.sample(0)) == 0
    with pytest.raises(ValueError):
        dataset.sample(-1)


def test_duplicate_ids_are_rejected() -> None:
    case = Case[IntentInputs, IntentExpected](id="same", inputs=IntentInputs(text="a"), expected=IntentExpected(label="x"))
    with pytest.raises(ValidationError, match="duplicate case ids"):
        IntentDataset(name="dup", cases=[case, case], source=DatasetSource(path="p", format="f"))


def test_jsonl_round_trip_keeps_types(tmp_path: Path) -> None:
    dataset = _intent_dataset(5)
    path = dataset.to_jsonl(tmp_path / "out" / "toy.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 6 and "__dataset__" in json.loads(lines[0])
    loaded = IntentDataset.from_jsonl(path)
    assert loaded == dataset
    assert isinstance(loaded.cases[0].inputs, IntentInputs)


def test_from_jsonl_without_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bare.jsonl"
    path.write_text('{"id": "a", "inputs": {"text": "t"}, "expected": {"label": "x"}}\n')
    with pytest.raises(DatasetFormatError, match="header"):
        IntentDataset.from_jsonl(path)


def test_real_dataset_round_trips_through_jsonl(tmp_path: Path) -> None:
    sample = load_dataset("restaurant8k", limit=25)
    loaded = SlotDataset.from_jsonl(sample.to_jsonl(tmp_path / "r8k.jsonl"))
    assert loaded == sample
    assert [case.id for case in loaded.cases] == [case.id for case in sample.cases]


# --- paths ------------------------------------------------------------------------------


def test_default_datasets_root_is_next_to_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATASETS_ENV, raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert datasets_root() == (repo.parent / "shared" / "datasets").resolve()
    assert (resolve_dataset_path("banking77") / "train.csv").is_file()


def test_env_var_overrides_the_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path))
    assert resolve_dataset_path("mine") == tmp_path / "mine"
    with pytest.raises(ConfigError, match=r"banking77.*not found.*mine"):
        resolve_dataset_path("banking77")


def test_missing_root_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=DATASETS_ENV):
        resolve_dataset_path("banking77")


def test_unknown_dataset_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="banking77"):
        load_dataset("no_such_dataset")


# --- intents ----------------------------------------------------------------------------


def test_banking77_real_file() -> None:
    dataset = load_dataset("banking77")
    assert len(dataset) == 10_003
    labels = dataset.metadata["labels"]
    assert len(labels) == 77
    assert {case.expected.label for case in dataset.cases} == set(labels)
    first = dataset.cases[0]
    assert first.id == "banking77-train-00000"
    assert first.inputs.text == "I am still waiting on my card?"
    assert first.expected.label == "card_arrival"


def test_banking77_limit_is_a_stratified_sample() -> None:
    sample = load_dataset("banking77", limit=77)
    assert len({case.expected.label for case in sample.cases}) == 77
    assert [c.id for c in sample.cases] == [c.id for c in load_dataset("banking77", limit=77).cases]


def test_banking77_other_split_and_unknown_category(tmp_path: Path) -> None:
    (tmp_path / "categories.json").write_text(json.dumps(["card_arrival", "top_up"]))
    with (tmp_path / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["text", "category"], ["where is my card, please?", "card_arrival"], ["top up", "top_up"]])
    dataset = load_banking77(tmp_path / "test.csv")
    assert [case.id for case in dataset.cases] == ["banking77-test-00000", "banking77-test-00001"]
    assert dataset.cases[0].inputs.text == "where is my card, please?"
    with (tmp_path / "bad.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["text", "category"], ["hi", "greeting"]])
    with pytest.raises(DatasetFormatError, match="greeting"):
        load_banking77(tmp_path / "bad.csv")


def test_clinc150_real_file_splits() -> None:
    path = resolve_dataset_path("clinc150") / "train_val.json"
    train = load_clinc150(path, include_oos=False)
    assert len(train) == 15_000
    assert len({case.expected.label for case in train.cases}) == 150
    with_oos = load_clinc150(path)
    assert len(with_oos) == 15_100
    oos = [case for case in with_oos.cases if case.expected.out_of_scope]
    assert len(oos) == 100 and {case.expected.label for case in oos} == {"oos"}
    assert len(with_oos.metadata["labels"]) == 151 and with_oos.metadata["labels"][-1] == "oos"
    assert len(load_clinc150(path, split="val")) == 3_100
    assert len(load_clinc150(path, split="oos_val")) == 100
    assert train.cases[0].metadata["domain"] == "travel"  # domains.json files "translate" under travel


def test_clinc150_test_format_and_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "test_split.json"
    path.write_text(json.dumps({"test": [["what is my balance", "balance"]], "oos_test": [["sing a song", "oos"]]}))
    dataset = load_clinc150(path, split="test")
    assert [(c.id, c.expected.label, c.expected.out_of_scope) for c in dataset.cases] == [
        ("clinc150-test-00000", "balance", False),
        ("clinc150-oos_test-00000", "oos", True),
    ]
    with pytest.raises(DatasetFormatError, match=r"oos_test.*test"):
        load_clinc150(path, split="train")


# --- slots ------------------------------------------------------------------------------


def test_restaurant8k_real_file() -> None:
    dataset = load_dataset("restaurant8k")
    assert len(dataset) == 8_198
    assert sum(1 for case in dataset.cases if case.expected.spans) == 5_223
    slots = Counter(span.slot for case in dataset.cases for span in case.expected.spans)
    assert slots == {"people": 2164, "time": 1972, "date": 1721, "last_name": 891, "first_name": 887}
    first = dataset.cases[0]
    assert first.inputs.requested_slots == ["people"]
    assert first.expected.slot_values() == {"people": ["5 adults and 1 child"]}
    # row 4 is "6 a.m." with no startIndex: the span starts at 0
    row4 = dataset.cases[4]
    assert row4.expected.spans[0].start == 0 and row4.expected.spans[0].text == "6 a.m."
    for case in dataset.cases:
        for span in case.expected.spans:
            assert case.inputs.text[span.start : span.end] == span.text and span.text


def test_restaurant8k_missing_start_index_means_zero(tmp_path: Path) -> None:
    path = tmp_path / "test.json"
    path.write_text(
        json.dumps(
            [
                {"userInput": {"text": "Smith, table for 4"}, "labels": [
                    {"slot": "last_name", "valueSpan": {"endIndex": 5}},
                    {"slot": "people", "valueSpan": {"startIndex": 17, "endIndex": 18}},
                ]},
                {"userInput": {"text": "no thanks"}, "context": {}},
            ]
        )
    )
    dataset = load_restaurant8k(path)
    spans = dataset.cases[0].expected.spans
    assert [(s.slot, s.start, s.end, s.text) for s in spans] == [("last_name", 0, 5, "Smith"), ("people", 17, 18, "4")]
    assert dataset.cases[1].expected.spans == [] and dataset.cases[1].id == "restaurant8k-test-00001"
    path.write_text(json.dumps([{"userInput": {"text": "hi"}, "labels": [{"slot": "time", "valueSpan": {"endIndex": 9}}]}]))
    with pytest.raises(DatasetFormatError, match="outside"):
        load_restaurant8k(path)


# --- BFCL -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "count"),
    [("bfcl_simple_python", 400), ("bfcl_multiple", 200), ("bfcl_parallel", 200), ("bfcl_irrelevance", 240)],
)
def test_bfcl_real_files(name: str, count: int) -> None:
    dataset = load_dataset(name)
    assert len(dataset) == count
    calls = Counter(len(case.expected.calls) for case in dataset.cases)
    if name == "bfcl_irrelevance":
        assert calls == {0: 240}
    elif name == "bfcl_parallel":
        assert calls == {2: 109, 3: 52, 4: 36, 8: 2, 6: 1}
    else:
        assert calls == {1: count}


def test_bfcl_case_content() -> None:
    case = load_dataset("bfcl_simple_python").case("simple_python_0")
    assert case.inputs.messages[0].role == "user"
    assert case.inputs.messages[0].content.startswith("Find the area of a triangle")
    assert case.inputs.functions[0].name == "calculate_triangle_area"
    assert case.inputs.functions[0].required == ["base", "height"]
    (call,) = case.expected.calls
    assert call.name == "calculate_triangle_area"
    assert call.accepted_arguments == {"base": [10], "height": [5], "unit": ["units", ""]}
    assert case.expected.category == "simple_python"


def test_bfcl_answer_file_must_cover_the_questions(tmp_path: Path) -> None:
    question = {"id": "simple_python_0", "question": [[{"role": "user", "content": "hi"}]], "function": [{"name": "f"}]}
    (tmp_path / "BFCL_v4_simple_python.json").write_text(json.dumps(question) + "\n")
    with pytest.raises(ConfigError, match="possible_answer"):
        load_bfcl(tmp_path / "BFCL_v4_simple_python.json")
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "possible_answer" / "BFCL_v4_simple_python.json").write_text(
        json.dumps({"id": "other_1", "ground_truth": [{"f": {}}]}) + "\n"
    )
    with pytest.raises(DatasetFormatError, match="no possible answer"):
        load_bfcl(tmp_path / "BFCL_v4_simple_python.json")


# --- tau2 -------------------------------------------------------------------------------


def test_tau2_retail_real_file() -> None:
    dataset = load_dataset("tau2_retail")
    assert len(dataset) == 74
    case = dataset.case("tau2_retail-0")
    request = case.inputs.customer_request
    assert "#W2378156" in request and "Yusuf Rossi in zip code 19122" in request and "detail-oriented" in request
    assert "email" not in request  # unknown_info stays with the simulated customer
    assert [action.name for action in case.expected.actions] == [
        "find_user_id_by_name_zip", "get_order_details", "get_product_details", "get_product_details",
        "exchange_delivered_order_items",
    ]
    assert [action.name for action in case.expected.writes] == ["exchange_delivered_order_items"]
    assert case.expected.actions[-1].arguments["payment_method_id"] == "credit_card_9513926"
    assert case.expected.reward_basis == ["DB", "NL_ASSERTION"]
    assert dataset.case("tau2_retail-34").expected.reward_basis == ["DB"]
    assert sum(1 for c in dataset.cases if c.expected.nl_assertions) == 29
    assert dataset.metadata["db_path"] is not None


def test_tau2_default_reward_basis_for_the_original_release(tmp_path: Path) -> None:
    task = {
        "id": "9",
        "user_scenario": {"instructions": {"reason_for_call": "Cancel #W1.", "known_info": None, "task_instructions": ""}},
        "evaluation_criteria": {"actions": [], "communicate_info": ["10"]},
    }
    (tmp_path / "tasks.json").write_text(json.dumps([task]))
    case = load_tau2_retail(tmp_path / "tasks.json").cases[0]
    assert case.expected.reward_basis == ["DB", "COMMUNICATE"]
    assert case.inputs.customer_request == "Cancel #W1."


# --- GSM8K ------------------------------------------------------------------------------


def test_routellm_gsm8k_real_file_drops_contaminated_prompts() -> None:
    dataset = load_dataset("routellm_gsm8k")
    assert len(dataset) == 654
    assert dataset.metadata["rows_in_file"] == 660 and dataset.metadata["contaminated_dropped"] == 6
    weak = sum(case.expected.weak.correct for case in dataset.cases)
    strong = sum(case.expected.strong.correct for case in dataset.cases)
    assert (weak, strong) == (415, 562)  # 63.46% and 85.93% as SOURCE.md states
    full = load_routellm_gsm8k(resolve_dataset_path("routellm_gsm8k") / "gsm8k_responses_even.csv", drop_contaminated=False)
    assert len(full) == 660
    assert full.cases[0].id == "gsm8k-gsm8k_responses_even-0000"
    assert dataset.cases[0].id == "gsm8k-gsm8k_responses_even-0002"  # rows 0 and 1 are contaminated
    case = dataset.cases[0]
    assert case.expected.strong.final_number == 20.0 and case.expected.reference_answer == 20.0


def test_routellm_gsm8k_reference_and_custom_contamination(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", WEAK, STRONG, f"{WEAK}_response", f"{STRONG}_response"])
        writer.writerow(["Q1", "True", "True", "so 3 + 4 = <<3+4=7>>7\n#### 7", "The answer is 7."])
        writer.writerow(["Q2", "False", "False", "#### 5", "It is 6."])
        writer.writerow(["Q3", "True", "False", "#### 1,200", "$1,100"])
    contaminated = tmp_path / "bad.jsonl"
    contaminated.write_text(json.dumps({"eval_prompt": "Q2", "train_prompt": "x"}) + "\n")
    dataset = load_routellm_gsm8k(path, contaminated_path=contaminated)
    assert [case.id for case in dataset.cases] == ["gsm8k-odd-0000", "gsm8k-odd-0002"]
    assert [case.expected.reference_answer for case in dataset.cases] == [7.0, 1200.0]
    assert len(load_routellm_gsm8k(path)) == 3  # no sibling contaminated_prompts.jsonl here


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("She makes 9 * $2 = $<<9*2=18>>18.\n#### 18", 18.0),
        ("So the total is 40 and the answer is 18.", 18.0),
        ("Final answer: $1,234.50 per month, over 12 months", 1234.5),
        (r"Thus \boxed{\frac{3}{4}} of the cake, i.e. 2 slices", 0.75),
        (r"we get \boxed{42}.", 42.0),
        ("He is 180 - 135 = 45 miles away from home.", 45.0),
        ("She ends up $-15 ahead.\n#### -15\n(Note: 3 hours)", -15.0),
        ("Order #W2378156 costs 12.5 dollars", 12.5),
        ("(12 / 20) x 100 = 60%", 60.0),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_final_number(text: str, number: float | None) -> None:
    assert extract_final_number(text) == number


@pytest.mark.parametrize(
    ("text", "number"), [("18", 18.0), ("18.0", 18.0), ("$1,234.50", 1234.5), ("-3", -3.0), ("60%", 60.0), ("18.", 18.0), ("2.5.", 2.5)]
)
def test_parse_number(text: str, number: float) -> None:
    assert parse_number(text) == number


def test_parse_number_rejects_text() -> None:
    assert parse_number("18 apples") is None
    assert parse_number("$") is None
    assert parse_number("") is None and parse_number(None) is None


def test_generic_dataset_without_type_parameters_keeps_dicts(tmp_path: Path) -> None:
    path = _intent_dataset(2).to_jsonl(tmp_path / "x.jsonl")
    loaded = Dataset.from_jsonl(path)
    assert loaded.cases[0].inputs == {"text": "text 0"}
