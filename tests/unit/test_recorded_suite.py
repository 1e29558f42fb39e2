"""The `recorded` graph and suite: logged outcomes of a model ladder (JSONL) replayed through
the tiered engine and graded by the recorded outcome of the model that answered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli import tierflow
from tests.conftest import REPO_ROOT
from tierflow.evals.harness.records import ResultStore
from tierflow.evals.suites import get_suite
from tierflow.evals.suites.recorded import load_recorded_cases

WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
CASES = [
    ("q1", "What is 2 + 2?\nA. 3\nB. 4", "arith", True, True),
    ("q2", "Which gas do plants take in?\nA. CO2\nB. O2", "biology", False, True),
    ("q3", "Who wrote Hamlet?\nA. Marlowe\nB. Shakespeare", "literature", True, False),
    ("q4", "The derivative of x^2 is?\nA. 2x\nB. x", "calculus", False, False),
]


def _write(path: Path, contaminated: str | None = None) -> Path:
    lines = []
    for case_id, text, group, weak, strong in CASES:
        record = {"id": case_id, "input": text, "group": group, "outcomes": {WEAK: {"correct": weak}, STRONG: {"correct": strong}}}
        if case_id == contaminated:
            record["contaminated"] = True
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n{not json\n", encoding="utf-8")
    return path


def test_loader_reads_cases_drops_contaminated_and_reports_bad_lines(tmp_path: Path) -> None:
    data = load_recorded_cases(_write(tmp_path / "r.jsonl", contaminated="q4"), None, 0)
    assert [c.id for c in data.cases] == ["q1", "q2", "q3"]
    assert data.metadata["dropped_contaminated"] == 1
    assert len(data.metadata["bad_lines"]) == 1 and "line 5" in data.metadata["bad_lines"][0]
    assert data.cases[1].expected.correct == {WEAK: False, STRONG: True}
    assert get_suite("recorded", dataset_path=tmp_path / "r.jsonl").name == "recorded"


def test_eval_grades_each_policy_by_the_recorded_outcome(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OLLAMA_HOST", "TIERFLOW_TIERS")}
    env.update({"TIERFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)})
    dataset = _write(tmp_path / "r.jsonl")
    out = tmp_path / "run"
    done = tierflow(
        env, "--tiers", str(REPO_ROOT / "tiers" / "replay_mmlu.toml"), "eval", "recorded", "--dataset", str(dataset),
        "--policy", "all-slm", "all-frontier", "--out", str(out), "--no-progress",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    store = ResultStore(out)
    for policy, index in (("all-slm", 3), ("all-frontier", 4)):
        records = store.load(policy)
        for case_id, *_, weak, strong in [(c[0], c[3], c[4]) for c in CASES]:
            expected = (weak, strong)[index - 3]
            assert records[case_id].evaluation("recorded_correct").passed is expected, (policy, case_id)
            step = records[case_id].steps[0]
            assert step.attempts[0].correct is expected
            assert step.attempts[0].signals is not None and step.attempts[0].signals["input_chars"] > 0


def test_an_unknown_recording_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"not found|cannot read|no such"):
        load_recorded_cases(tmp_path / "missing.jsonl", None, 0)
