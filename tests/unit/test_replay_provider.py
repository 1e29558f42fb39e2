"""The replay provider on a small hand-written recording (RouteLLM's CSV format) and on the
real shared GSM8K file: lookup, structured output, usage, misses and configuration errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from tests.unit.replay_ladders import replay_registry
from tierflow.model_tiers import ConfigError, InvalidModelOutput, TierRegistry, estimate_tokens
from tierflow.model_tiers.providers import build_chat_model
from tierflow.model_tiers.providers._tool_calling import messages_as_text
from tierflow.model_tiers.providers.replay import (
    RecordingMiss,
    ReplayChatModel,
    load_recording,
    normalize_question,
    replay_model_from_options,
)
from tierflow.tools.datasets import dataset_file

WEAK, STRONG = "weak/model-7b", "strong-model"
PARSER = "tierflow.agents.numbers:extract_final_number"
QUESTION_EGGS = "Janet has 16 eggs.  She eats 3.\nHow many eggs are left?"
QUESTION_PENS = "A pen costs $2. How much do 4 pens cost?"
WEAK_EGGS = " She has 16 - 3 = <<16-3=13>>13 eggs left.\n#### 13\n"
STRONG_EGGS = "16 - 3 = 13, so 13 eggs are left."
WEAK_PENS = "I am not sure, maybe a lot."


class MathSolution(BaseModel):
    solution: str
    final_answer: str


class NeedsReason(BaseModel):
    solution: str
    reason: str


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "recorded.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["prompt", WEAK, STRONG, f"{WEAK}_response", f"{STRONG}_response"])
        writer.writerow([QUESTION_EGGS, "True", "True", WEAK_EGGS, STRONG_EGGS])
        writer.writerow([QUESTION_PENS, "False", "True", WEAK_PENS, "4 * $2 = $8. The answer is $8."])
    return path


def options(path: Path, model: str = WEAK, **extra: object) -> dict[str, object]:
    return {"recording": str(path), "model": model, "final_number": PARSER, **extra}


def registry(path: Path) -> TierRegistry:
    return replay_registry([("slm", options(path, WEAK), 0.6, 0.6), ("frontier", options(path, STRONG), 10.0, 30.0)])


def prompt(question: str) -> list:
    return [SystemMessage("Solve the problem."), HumanMessage(f"Math word problem:\n<<<\n{question}\n>>>\n\nSolve it.")]


def test_text_call_finds_the_fenced_question_and_returns_the_recorded_response(recording: Path) -> None:
    model = replay_model_from_options("slm", options(recording))
    reply = model.invoke(prompt(QUESTION_EGGS))
    assert isinstance(reply, AIMessage)
    assert reply.content == WEAK_EGGS
    assert reply.response_metadata["model_name"] == WEAK
    assert reply.response_metadata["replay_row"] == 0
    strong = replay_model_from_options("frontier", options(recording, STRONG))
    assert strong.invoke(prompt(QUESTION_EGGS)).content == STRONG_EGGS


def test_question_matches_after_whitespace_normalisation_and_without_a_fence(recording: Path) -> None:
    model = replay_model_from_options("slm", options(recording))
    spaced = "Janet has 16 eggs. She eats 3. How many eggs are left?"  # one space, no newline
    assert model.invoke(prompt(spaced)).content == WEAK_EGGS
    embedded = [HumanMessage(f"Please help with this one: {QUESTION_PENS} Thanks!")]
    assert model.invoke(embedded).content == WEAK_PENS
    assert normalize_question("  a \n\t b  ") == "a b"


def test_structured_output_fills_solution_and_parsed_final_number_with_estimated_usage(recording: Path) -> None:
    reg = registry(recording)
    messages = prompt(QUESTION_EGGS)
    reply = reg.call("slm", messages, schema=MathSolution)
    assert reply.value == MathSolution(solution=WEAK_EGGS, final_answer="13")
    # Usage: 4 characters per token of the prompt sent and of the recorded text (not the JSON wrapper).
    assert reply.usage.input_tokens == estimate_tokens(messages_as_text(messages))
    assert reply.usage.output_tokens == estimate_tokens(WEAK_EGGS)
    assert reply.usage.cost_usd == pytest.approx((reply.usage.input_tokens + reply.usage.output_tokens) * 0.6 / 1e6)
    top = reg.call("frontier", prompt(QUESTION_PENS), schema=MathSolution)
    assert top.value.final_answer == "8"
    assert top.usage.cost_usd == pytest.approx((top.usage.input_tokens * 10 + top.usage.output_tokens * 30) / 1e6)


def test_with_structured_output_directly_and_a_retry_returns_the_same_recording(recording: Path) -> None:
    model = replay_model_from_options("slm", options(recording))
    runnable = model.with_structured_output(MathSolution, include_raw=True)
    first = runnable.invoke(prompt(QUESTION_EGGS))
    retry = runnable.invoke([*prompt(QUESTION_EGGS), AIMessage("13"), HumanMessage("That answer was rejected: x. Answer again.")])
    assert first["parsed"] == retry["parsed"] == MathSolution(solution=WEAK_EGGS, final_answer="13")
    assert first["raw"].tool_calls[0]["name"] == "MathSolution"


def test_a_response_without_a_number_gives_an_empty_final_answer(recording: Path) -> None:
    reply = registry(recording).call("slm", prompt(QUESTION_PENS), schema=MathSolution)
    assert reply.value == MathSolution(solution=WEAK_PENS, final_answer="")


def test_unknown_question_is_a_typed_config_error_not_a_model_failure(recording: Path) -> None:
    reg = registry(recording)
    with pytest.raises(RecordingMiss, match=r"no recorded answer .* 2 questions") as caught:
        reg.call("slm", prompt("How many legs does a spider have?"), schema=MathSolution)
    assert isinstance(caught.value, ConfigError)
    assert not isinstance(caught.value, InvalidModelOutput)
    assert str(recording) in str(caught.value)


def test_the_index_is_built_once_per_file_and_shared_by_tiers(recording: Path) -> None:
    weak = replay_model_from_options("slm", options(recording))
    strong = replay_model_from_options("frontier", options(recording, STRONG))
    assert weak.recording() is strong.recording() is load_recording(recording)
    assert len(weak.recording().index) == 2


def test_relative_recording_resolves_under_the_datasets_folder(recording: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERFLOW_DATASETS", str(recording.parent))
    model = replay_model_from_options("slm", options(Path("recorded.csv")))
    assert model.recording_path == recording
    with pytest.raises(ConfigError, match="replay recording not found"):
        replay_model_from_options("slm", options(Path("missing.csv")))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"recording": ""}, "no options.recording"),
        ({"model": "", "response_column": ""}, "set options.model"),
        ({"fields": {"solution": "transcript"}}, "unknown sources"),
        ({"final_number": ""}, "options.final_number must name"),
        ({"final_number": "tierflow.agents.numbers"}, "package.module:function"),
        ({"final_number": "tierflow.agents.numbers:no_such_parser"}, "cannot import"),
        ({"temperature_hint": 1}, "unknown replay options"),
    ],
)
def test_bad_options_are_config_errors(recording: Path, bad: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replay_model_from_options("slm", {**options(recording), **bad})


def test_unknown_model_column_and_unmapped_schema_field_are_config_errors(recording: Path) -> None:
    model = replay_model_from_options("slm", options(recording, "other/model"))
    with pytest.raises(ConfigError, match="no column 'other/model_response'"):
        model.invoke(prompt(QUESTION_EGGS))
    with pytest.raises(ConfigError, match="cannot fill the required field 'reason'"):
        registry(recording).call("slm", prompt(QUESTION_EGGS), schema=NeedsReason)


def test_build_chat_model_builds_the_replay_tier_from_the_shipped_tiers_file() -> None:
    from tests.conftest import REPO_ROOT
    from tierflow.model_tiers import load_tier_config

    config = load_tier_config(REPO_ROOT / "tiers" / "replay_gsm8k.toml", env={})
    assert config.escalation.max_retries == 0
    assert [(t.price_input_per_mtok, t.price_output_per_mtok) for t in config.tiers] == [(0.6, 0.6), (10.0, 30.0)]
    model = build_chat_model(config.tier("frontier"), env={})
    assert isinstance(model, ReplayChatModel)
    assert model.recording_path == dataset_file("routellm_gsm8k", "gsm8k_responses_even.csv")
    with dataset_file("routellm_gsm8k", "gsm8k_responses_even.csv").open(encoding="utf-8", newline="") as handle:
        first = next(csv.DictReader(handle))
    reply = model.invoke(prompt(first["prompt"]))
    assert reply.content == first["gpt-4-1106-preview_response"]


def test_an_eval_of_another_recordings_file_replays_that_file(tmp_path: Path) -> None:
    """`tierflow eval math_qa --tiers tiers/replay_gsm8k.toml --dataset OTHER.csv` must replay
    OTHER.csv (the tiers file names the even half): no case may end in a RecordingMiss."""
    from tests.conftest import REPO_ROOT
    from tierflow.evals.harness.evaluate import EvalSettings, run_eval
    from tierflow.evals.harness.policies import resolve_policies
    from tierflow.evals.suites.math_qa import ROUTELLM_GSM8K

    source = dataset_file("routellm_gsm8k", "gsm8k_responses_even.csv")
    with source.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    other = tmp_path / "gsm8k_responses_other.csv"
    with other.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[-30:])  # another file: rows the even half's first cases do not have
    policies = resolve_policies(["all-slm", "tiered"], defaults=(), thresholds=(), on_top_failure="fail")
    settings = EvalSettings(
        policies=tuple(policies), out_dir=tmp_path / "run", dataset_path=other, limit=8,
        tiers_file=str(REPO_ROOT / "tiers" / "replay_gsm8k.toml"), progress=False, concurrency=2,
    )
    result = run_eval(ROUTELLM_GSM8K, settings)
    statuses = {s for p in result.report.policies for s, n in p.statuses.items() if n}
    assert "error" not in statuses, [r.error for r in result.report.policies]
    manifest = result.out_dir.joinpath("run.json").read_text()
    assert str(other.resolve()) in manifest and "gsm8k_responses_even.csv" not in manifest
