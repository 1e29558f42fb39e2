"""math_qa end to end on the real engine with the replay tiers (tiers/replay_gsm8k.toml):
real recorded Mixtral (slm) and GPT-4 (frontier) answers from RouteLLM's GSM8K file."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tierflow.agents.numbers import extract_final_number
from tierflow.evals.bench.replay_gsm8k import Policy, run_benchmark
from tierflow.graphs.catalog import load_graph_module
from tierflow.graphs.math_qa import SOLVE_STEP, WORKFLOW, build
from tierflow.model_tiers import TierRegistry, load_tier_config
from tierflow.model_tiers.providers.replay import RecordingMiss
from tierflow.tools.datasets import dataset_file

TIERS = REPO_ROOT / "tiers" / "replay_gsm8k.toml"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def recorded_rows() -> list[dict[str, str]]:
    with dataset_file("routellm_gsm8k", "gsm8k_responses_even.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def row_starting(prefix: str) -> dict[str, str]:
    return next(row for row in recorded_rows() if row["prompt"].startswith(prefix))


# Picked by reading the recordings: Mixtral right and its arithmetic checks out; Mixtral
# wrong with "5 * 75 + 120 = 795"; Mixtral cut off mid calculator note; Mixtral wrong with
# correct arithmetic but a final answer that is not its last computed result (score 0.75).
RIGHT = "Toulouse has twice as many sheep as Charleston"
WRONG_ARITHMETIC = "Judy teaches 5 dance classes"
CUT_OFF = "Every day, Wendi feeds each of her chickens"
FINAL_NOT_LAST = "John runs 60 miles a week"


def replay_registry() -> TierRegistry:
    return TierRegistry(load_tier_config(TIERS, env={}), env={})


def run(question: str, *, context: dict[str, Any] | None = None, **build_kw: Any) -> dict[str, Any]:
    graph = build(registry=replay_registry(), resources={}, **build_kw)
    return graph.invoke({"request": question}, context=context)


def verdicts(out: dict[str, Any]) -> list[tuple[str, str]]:
    return [(u["tier"], u["verdict"]) for u in out["ledger"]]


def test_slm_answer_that_checks_out_is_decided_by_the_slm() -> None:
    row = row_starting(RIGHT)
    assert row[WEAK] == "True"
    out = run(row["prompt"])
    assert out["status"] == "done"
    assert verdicts(out) == [("slm", "pass")]
    final = out["final"]
    assert final["answered_by"] == "slm" and final["verified"] is True
    assert final["answer"] == extract_final_number(row[f"{WEAK}_response"]) == 260
    assert final["solution"] == row[f"{WEAK}_response"]
    assert out["decided_by"] == {f"0:{SOLVE_STEP}": "slm"}
    usage = out["ledger"][0]
    assert usage["role"] == "extract" and usage["model"] == WEAK
    assert usage["cost_usd"] == pytest.approx((usage["input_tokens"] + usage["output_tokens"]) * 0.6 / 1e6)


def test_wrong_slm_arithmetic_is_escalated_to_the_frontier() -> None:
    row = row_starting(WRONG_ARITHMETIC)
    assert row[WEAK] == "False" and row[STRONG] == "True"
    out = run(row["prompt"])
    assert out["status"] == "done"
    assert verdicts(out) == [("slm", "fail"), ("frontier", "pass")]
    assert "5 * 75 + 120 = 495, not 795" in out["ledger"][0]["reason"]
    escalations = [e for e in out["events"] if e["type"] == "escalate"]
    assert [(e["from"], e["to"]) for e in escalations] == [("slm", "frontier")]
    final = out["final"]
    assert final["answered_by"] == "frontier" and final["verified"] is True
    assert final["answer"] == extract_final_number(row[f"{STRONG}_response"])
    top = out["ledger"][1]
    assert top["model"] == STRONG
    assert top["cost_usd"] == pytest.approx((top["input_tokens"] * 10 + top["output_tokens"] * 30) / 1e6)
    # The frontier is shown the rejected answer and the reason: its prompt is longer.
    assert top["input_tokens"] > out["ledger"][0]["input_tokens"]


def test_a_cut_off_slm_answer_is_escalated() -> None:
    out = run(row_starting(CUT_OFF)["prompt"])
    assert verdicts(out) == [("slm", "fail"), ("frontier", "pass")]
    assert "unclosed calculator note" in out["ledger"][0]["reason"]
    assert out["final"]["answered_by"] == "frontier"


def test_all_slm_policy_returns_the_failed_slm_answer_flagged_unverified() -> None:
    row = row_starting(WRONG_ARITHMETIC)
    out = run(row["prompt"], context={"policy": "all-slm"})
    assert out["status"] == "failed"
    assert verdicts(out) == [("slm", "fail")]
    final = out["final"]
    assert final["answered_by"] == "slm" and final["verified"] is False
    assert final["answer"] == extract_final_number(row[f"{WEAK}_response"]) == 11925
    assert final["failure"]["step"] == SOLVE_STEP


def test_a_score_threshold_escalates_what_the_strict_checks_let_through() -> None:
    row = row_starting(FINAL_NOT_LAST)
    assert row[WEAK] == "False"
    strict = run(row["prompt"])
    assert verdicts(strict) == [("slm", "pass")]
    swept = run(row["prompt"], min_score=0.8)
    assert swept["ledger"][0]["verdict"] == "fail"
    assert "verifier score 0.75 is below 0.8" in swept["ledger"][0]["reason"]
    assert "not the last computed result" in swept["ledger"][0]["reason"]
    # GPT-4's recorded answer has the same soft signal: at the top it is returned, unverified.
    assert swept["final"]["answered_by"] == "frontier" and swept["final"]["verified"] is False
    assert swept["final"]["answer"] == extract_final_number(row[f"{STRONG}_response"])


def test_a_question_that_is_not_in_the_recording_stops_the_run_with_a_clear_error() -> None:
    with pytest.raises(RecordingMiss, match="no recorded answer"):
        run("What is 2 + 2?")


def test_catalog_exposes_math_qa() -> None:
    module = load_graph_module("math_qa")
    assert module.WORKFLOW is WORKFLOW
    assert [(s.name, s.role) for s in WORKFLOW.steps] == [(SOLVE_STEP, "extract")]
    assert {SOLVE_STEP, "human_review"} <= set(module.graph.get_graph().nodes)


def test_benchmark_runs_on_any_file_of_the_same_format(tmp_path: Path) -> None:
    rows = recorded_rows()
    header = list(rows[0])
    chosen = [row_starting(p) for p in (RIGHT, WRONG_ARITHMETIC, CUT_OFF, FINAL_NOT_LAST)]
    dataset = tmp_path / "subset.csv"  # no contaminated_prompts.jsonl next to it: nothing dropped
    with dataset.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(chosen)
    policies = [Policy("all-slm", "all-slm"), Policy("all-frontier", "all-frontier"), Policy("tiered", "tiered"),
                Policy("tiered score>=0.8", "tiered", 0.8)]
    report = run_benchmark(dataset, tmp_path / "out", tiers_file=TIERS, policies=policies, workers=2)
    by = {p["name"]: p for p in report["policies"]}
    assert by["all-slm"]["correct"] == sum(r[WEAK] == "True" for r in chosen) == 1
    assert by["all-frontier"]["correct"] == sum(r[STRONG] == "True" for r in chosen) == 4
    assert by["tiered"]["correct"] == 3 and by["tiered"]["frontier_calls"] == 2
    assert by["tiered score>=0.8"]["correct"] == 4 and by["tiered score>=0.8"]["frontier_calls"] == 3
    assert by["tiered"]["verifier"]["slm"] == {
        "judged": 4, "flagged": 2, "true_positives": 2, "false_positives": 0, "false_negatives": 1,
        "precision": 1.0, "recall": pytest.approx(2 / 3),
    }
    assert all(p["answer_mismatches"] == 0 for p in report["policies"])
    assert report["oracle"]["accuracy"] == 1.0
    for name in ("report.json", "report.md", "cases.jsonl", "cost_quality.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["meta"]["cases"] == 4
    assert "RouteLLM published (GSM8K)" in (tmp_path / "out" / "report.md").read_text()
