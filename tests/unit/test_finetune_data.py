"""Fine-tuning inputs, without training: training files, the examples built from a suite,
the compact prompt, the adapter tier settings, and the CLI's errors (which write nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tierflow.agents.prompts import step_messages
from tierflow.agents.spec import PlanItem, StepInput
from tierflow.cli import main
from tierflow.evals.datasets.intents import IntentCase, IntentExpected, IntentInputs, by_label
from tierflow.evals.finetune import step_examples, step_of, stratified_split
from tierflow.evals.suites.ticket_triage import BANKING77
from tierflow.model_tiers import ConfigError
from tierflow.model_tiers.config import load_tier_config
from tierflow.model_tiers.finetune import TrainingDataError, load_training_file
from tierflow.model_tiers.finetune.gguf_adapter import permute_rows
from tierflow.model_tiers.finetune.run import prompt_mode_of
from tierflow.model_tiers.spec import TierSpec

GOOD_LINE = {
    "messages": [
        {"role": "user", "content": "Customer message:\n<<<\nwhere is my card\n>>>"},
        {"role": "assistant", "content": '{"label": "card_arrival", "confidence": 1.0}'},
    ],
    "metadata": {"step": "classify", "prompt": "compact"},
}


def _file(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines), encoding="utf-8")
    return path


def _case(i: int, label: str, text: str = "where is my card") -> IntentCase:
    return IntentCase(id=f"c{i}", inputs=IntentInputs(text=text), expected=IntentExpected(label=label))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((), "holds no training examples"),
        (("",), "holds no training examples"),
        ((GOOD_LINE, "{not json"), "line 2: not JSON"),
        (({"prompt": "x", "completion": "y"},), 'expected an object with "messages"'),
        (({"messages": [{"role": "user", "content": "hi"}]},), "line 1: messages"),
        (({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},), "must be the assistant's answer"),
        (({"messages": [{"role": "robot", "content": "a"}, {"role": "assistant", "content": "b"}]},), "line 1: messages.0.role"),
    ],
)
def test_a_bad_training_file_names_its_first_problem(tmp_path: Path, lines: tuple, message: str) -> None:
    with pytest.raises(TrainingDataError, match=message):
        load_training_file(_file(tmp_path, *lines))


def test_only_the_chosen_steps_examples_are_read(tmp_path: Path) -> None:
    other = {**GOOD_LINE, "metadata": {"step": "extract"}}
    path = _file(tmp_path, GOOD_LINE, other)
    assert len(load_training_file(path, step="classify")) == 1
    with pytest.raises(TrainingDataError, match="no training examples for step 'draft'"):
        load_training_file(_file(tmp_path, other), step="draft")


def test_one_tier_is_trained_on_one_prompt_style(tmp_path: Path) -> None:
    full = {**GOOD_LINE, "metadata": {"step": "classify"}}
    examples = load_training_file(_file(tmp_path, GOOD_LINE, full))
    with pytest.raises(TrainingDataError, match="mix prompt styles"):
        prompt_mode_of(examples)
    assert prompt_mode_of(examples[:1]) == "compact" and prompt_mode_of(examples[1:]) == "full"


def test_examples_from_the_suite_use_the_steps_prompt_and_the_gold_answer() -> None:
    examples = step_examples(BANKING77, "classify", [_case(0, "card_arrival")], prompt="compact").examples
    (example,) = examples
    assert [m.role for m in example.messages] == ["user", "assistant"]
    assert example.messages[0].content == "Customer message:\n<<<\nwhere is my card\n>>>"
    assert json.loads(example.messages[1].content or "") == {"label": "card_arrival", "confidence": 1.0}
    assert example.response_format and example.response_format["json_schema"]["name"] == "ClassifyLabel"
    full = step_examples(BANKING77, "classify", [_case(0, "card_arrival")], prompt="full").examples[0]
    assert [m.role for m in full.messages] == ["system", "user", "assistant"]
    assert "Candidate labels" in (full.messages[1].content or "")


def test_a_step_the_graph_does_not_have_or_has_no_answers_for_is_an_error() -> None:
    with pytest.raises(TrainingDataError, match="graph 'ticket_triage' has no step 'nope'; its model steps are: classify"):
        step_of("ticket_triage", "nope")
    with pytest.raises(TrainingDataError, match="knows no right answers for step 'extract'"):
        step_examples(BANKING77, "extract", [_case(0, "card_arrival")], prompt="compact")


def test_the_compact_prompt_is_the_fenced_message_alone() -> None:
    spec = step_of("ticket_triage", "classify")
    inp = StepInput(request="my card is lost", results={}, item=PlanItem(id="0:classify", step="classify"), resources={})
    compact = step_messages(spec, inp, [], compact=True)
    full = step_messages(spec, inp, [])
    assert [m.type for m in compact] == ["human"] and "Candidate labels" not in str(compact[0].content)
    assert [m.type for m in full] == ["system", "human"] and "Candidate labels" in str(full[1].content)
    # an extractor that reads only the request sends it alone as well
    extract = step_of("ticket_triage", "extract")
    assert [m.content for m in step_messages(extract, inp, [], compact=True)] == [compact[0].content]


def test_training_and_evaluation_samples_never_overlap() -> None:
    cases = [_case(i, f"l{i % 3}", f"text {i}") for i in range(30)]
    held_out, train = stratified_split(cases, by_label, (2, 5), seed=0)
    assert not {c.id for c in held_out} & {c.id for c in train}
    assert sorted(by_label(c) for c in held_out) == sorted(["l0", "l1", "l2"] * 2)
    assert len(train) == 15
    assert stratified_split(cases, by_label, (2, 5), seed=0)[1] == train  # seeded


def test_an_adapter_belongs_to_an_embedded_tier_and_shows_in_the_model_label() -> None:
    spec = TierSpec(name="ft", provider="embedded", model="smollm2-135m-instruct", adapter="/x/adapter.gguf", prompt="compact")
    assert spec.model_label == "smollm2-135m-instruct+adapter"
    with pytest.raises(ValueError, match="'adapter' applies to embedded tiers"):
        TierSpec(name="ft", provider="ollama", model="m", adapter="/x/adapter.gguf")


def test_a_missing_adapter_file_is_a_config_error_when_the_tier_loads(tmp_path: Path) -> None:
    from tierflow.model_tiers.providers.model_files import check_adapter_file

    with pytest.raises(ConfigError, match="LoRA adapter file not found"):
        check_adapter_file(str(tmp_path / "nope.gguf"))
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf")
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        check_adapter_file(str(tmp_path / "bad.gguf"))


def test_qk_rows_are_permuted_as_llama_cpp_expects() -> None:
    # two heads of 4 rows: HF keeps each head's halves apart, llama.cpp interleaves them
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)
    assert permute_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "{bad}"], "not JSON"),
        (["--data", "{good}", "--graph", "ticket_triage", "--step", "nope"], "has no step 'nope'"),
        (["--graph", "ticket_triage"], "give --data FILE, or --graph, --step and --from-dataset"),
        (["--data", "{good}", "--tier", "frontier-x"], "unknown tier 'frontier-x'"),
    ],
)
def test_the_cli_rejects_bad_training_input_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    bad = _file(tmp_path, "{bad")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(GOOD_LINE) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = [a.replace("{bad}", str(bad)).replace("{good}", str(good)) for a in argv]
    assert main(["finetune", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not out.exists()


def test_the_default_ladder_has_no_adapter() -> None:
    assert all(t.adapter is None and t.prompt == "full" for t in load_tier_config(None, env={}).tiers)


# -- the top-level guard: no traceback reaches the terminal ------------------------------------


@pytest.mark.parametrize(("error", "code"), [(RuntimeError("a bug"), 1), (PermissionError("read-only disk"), 2)])
def test_an_unexpected_error_is_one_line_and_a_log_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, error: Exception, code: int
) -> None:
    import tierflow.cli.finetune as finetune_cli

    def boom(args: object) -> int:
        raise error

    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(finetune_cli, "_finetune", boom)
    assert main(["finetune", "--data", "x.jsonl"]) == code
    err = capsys.readouterr().err.replace("\n", " ")
    assert "Traceback" not in err and str(error) in err
    (log,) = (tmp_path / "home" / "logs").iterdir()
    assert "Traceback" in log.read_text() and str(log) in err


def test_a_home_that_is_a_file_is_named_as_such(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tierflow.cli.run import data_dir

    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError, match="is a file, not a folder: point TIERFLOW_HOME at a folder"):
        data_dir()
