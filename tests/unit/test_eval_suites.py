"""The graph suites of evals/suites on a few real cases: slot_extraction and order_agent with
SCRIPTED tiers (every policy's outcome known in advance, metrics checked by hand) and
math_qa with the real replay tiers (grades checked against the file's recorded correctness)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.unit.eval_suite_scripts import SLOT_SLM
from tierflow.evals.datasets import default_dataset_file
from tierflow.evals.harness import EvalSettings, ResultStore, proportion, resolve_policies, run_eval
from tierflow.evals.suites import get_suite, suites_for
from tierflow.evals.suites.math_qa import ROUTELLM_GSM8K
from tierflow.evals.suites.order_agent import TAU2_RETAIL, GoldReplay, answer_confirmations, change_is_correct, pristine_db
from tierflow.evals.suites.slot_extraction import RESTAURANT8K, extract_is_correct
from tierflow.model_tiers.testing import block_network, scripted_ladder_toml
from tierflow.tools.retail import RetailDB

REPO = Path(__file__).resolve().parents[2]
POLICIES = ("all-slm", "all-frontier", "tiered")

SLOT_TIERS = scripted_ladder_toml("tests.unit.eval_suite_scripts:slot_slm", "tests.unit.eval_suite_scripts:slot_frontier", frontier_local=True)


def _clean_env(mp: pytest.MonkeyPatch, home: Path) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST", "TIERFLOW_TIERS", "TIERFLOW_POLICY"):
        mp.delenv(var, raising=False)
    mp.setenv("TIERFLOW_HOME", str(home))


def _settings(root: Path, tiers: str, policies: Sequence[str] = POLICIES, **kw: Any) -> EvalSettings:
    chosen = resolve_policies(policies, defaults=())
    return EvalSettings(policies=tuple(chosen), out_dir=root / "run", tiers_file=tiers, progress=False, concurrency=2, **kw)


def test_suites_are_registered():
    assert list(suites_for("slot_extraction")) == ["restaurant8k"]
    assert list(suites_for("math_qa")) == ["routellm_gsm8k"]
    assert get_suite("math_qa") is ROUTELLM_GSM8K and get_suite("slot_extraction") is RESTAURANT8K
    assert list(suites_for("order_agent")) == ["tau2_retail", "bfcl"]
    assert RESTAURANT8K.thresholds == () and ROUTELLM_GSM8K.thresholds == ()


# -- slot_extraction -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slots_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """restaurant8k train_0 rows 0-3 (real cases) under three policies, scripted tiers:
    row 0 slm right; row 1 slm people '9' (gold '9 people') passes the verifier; row 2 slm
    time='room' fails the verifier twice, frontier answers gold; row 3 slm adds a wrong
    first_name that passes the verifier. The frontier always answers gold."""
    root = tmp_path_factory.mktemp("eval-slots")
    rows = json.loads(default_dataset_file("restaurant8k").read_text(encoding="utf-8"))[:4]
    data = root / "restaurant8k.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    assert [r["userInput"]["text"] for r in rows] == list(SLOT_SLM)
    tiers = root / "tiers.toml"
    tiers.write_text(SLOT_TIERS, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp, block_network():
        _clean_env(mp, root / "home")
        return run_eval(RESTAURANT8K, _settings(root, str(tiers), dataset_path=data))


def test_slot_metrics_by_hand(slots_run):
    report = slots_run.report
    slm = report.policy("all-slm").quality
    # all-slm: people tp2 fp1 fn2 (row 1 wrong, row 2 sent to a human), date tp1, first_name fp1.
    assert slm["micro_f1"].value == pytest.approx(0.6)  # tp3 fp2 fn2
    assert slm["macro_f1"].value == pytest.approx((4 / 7 + 1 + 0) / 3)
    assert (slm["slot_match"].successes, slm["slot_match"].n) == (1, 4)
    assert slm["slot_match"] == proportion(1, 4)
    assert (slm["slot_people"].successes, slm["slot_people"].n) == (2, 4)
    assert (slm["slot_date"].successes, slm["slot_date"].n) == (1, 1)
    assert (slm["slot_first_name"].successes, slm["slot_first_name"].n) == (0, 1)
    assert slm["slot_time"].n == 0  # the rejected time never reached the output
    tiered = report.policy("tiered").quality
    assert tiered["micro_f1"].value == pytest.approx(8 / 11)  # tp4 fp2 fn1
    assert (tiered["slot_match"].successes, tiered["slot_match"].n) == (2, 4)
    frontier = report.policy("all-frontier").quality
    assert frontier["micro_f1"].value == 1.0 and frontier["macro_f1"].value == 1.0
    assert (frontier["slot_match"].successes, frontier["slot_match"].n) == (4, 4)
    assert report.policy("all-slm").statuses == {"done": 3, "needs_human": 1}
    assert report.policy("tiered").statuses == {"done": 4}


def test_slot_verifier_precision_recall(slots_run):
    tiered = slots_run.report.policy("tiered")
    # slm first candidates: row 0 right/pass, row 1 wrong/pass, row 2 wrong/fail, row 3 wrong/pass.
    assert tiered.verifier_on("extract", "slm").counts == (1, 0, 2, 1)
    assert tiered.verifier_on("extract", "frontier").counts == (0, 0, 0, 1)
    records = ResultStore(slots_run.out_dir).load("tiered")
    rescued = next(r for r in records.values() if r.output["slots"] == {"people": "11"})
    assert rescued.output["decided_by"] == "frontier"


def test_extract_truth_needs_every_slot():
    case = RESTAURANT8K.load(default_dataset_file("restaurant8k"), None, 0).cases[0]
    gold = {s.slot: s.text for s in case.expected.spans}
    assert extract_is_correct(gold, case) is True
    assert extract_is_correct({**gold, "last_name": "x"}, case) is False
    assert extract_is_correct(None, case) is False


# -- math_qa (real replay tiers) -------------------------------------------------------------


@pytest.fixture(scope="module")
def math_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("eval-math")
    with pytest.MonkeyPatch.context() as mp, block_network():
        _clean_env(mp, root / "home")
        return run_eval(ROUTELLM_GSM8K, _settings(root, str(REPO / "tiers" / "replay_gsm8k.toml"), limit=8))


def test_math_grades_follow_the_recorded_correctness(math_run):
    cases = {c.id: c for c in ROUTELLM_GSM8K.load(None, 8, 0).cases}
    strata = {(c.expected.weak.correct, c.expected.strong.correct) for c in cases.values()}
    assert len(strata) == 4  # the sample covers every (Mixtral, GPT-4) correctness pair
    store = ResultStore(math_run.out_dir)
    for policy, model in (("all-slm", "weak"), ("all-frontier", "strong")):
        records = store.load(policy)
        for case_id, record in records.items():
            recorded = getattr(cases[case_id].expected, model)
            assert record.output["solution"] == recorded.response
            grade = record.evaluation("math_answer_correct")
            assert grade.passed is recorded.correct and grade.details["source"] == recorded.model
        expected = sum(getattr(cases[i].expected, model).correct for i in records)
        assert math_run.report.policy(policy).quality["math_answer_correct"].successes == expected
    # tiered: Mixtral's answer when it passed the verifier, else GPT-4's.
    expected_tiered = 0
    for case_id, record in store.load("tiered").items():
        [solve] = [s for s in record.steps if s.node == "solve"]
        first = solve.attempts[0]
        assert first.tier == "slm" and first.correct is cases[case_id].expected.weak.correct
        answered = cases[case_id].expected.weak if first.verdict == "pass" else cases[case_id].expected.strong
        assert record.evaluation("math_answer_correct").passed is answered.correct
        expected_tiered += answered.correct
    assert math_run.report.policy("tiered").quality["math_answer_correct"].successes == expected_tiered


def test_math_verifier_counts_match_the_traces(math_run):
    for policy in math_run.report.policies:
        records = ResultStore(math_run.out_dir).load(policy.policy).values()
        for score in policy.verifier:
            seen = []
            for record in records:
                for step in record.steps:
                    first = next((a for a in step.attempts if a.tier == score.tier), None)
                    if first is not None and first.correct is not None:
                        seen.append((first.verdict == "fail", not first.correct))
            assert (score.tp, score.fn, score.judged) == (
                sum(1 for f, w in seen if f and w), sum(1 for f, w in seen if not f and w), len(seen)
            )


# -- order_agent (scripted tiers, real tau2 tasks, real retail database) ----------------------

ORDER_TIERS = scripted_ladder_toml(
    "tests.unit.eval_suite_scripts:order_slm",
    "tests.unit.eval_suite_scripts:order_frontier",
    extra="""
[roles]
plan = "frontier"
classify = "slm"
extract = "slm"
tool = "slm"
verify = "slm"
respond = "slm"
judge = "frontier"
""",
)


@pytest.fixture(scope="module")
def order_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """tau2 retail tasks 43 (change the default address; seven strings to say) and 69
    (cancel an order). The frontier plans the gold actions and says every required string;
    the slm follows a plan's gold actions but plans no write and says nothing required.
    all-slm: no write, nothing said; all-frontier: gold; tiered: the frontier's plan, slm
    tool calls and reply (right database, nothing said)."""
    root = tmp_path_factory.mktemp("eval-order")
    tasks = [t for t in json.loads(default_dataset_file("tau2_retail").read_text(encoding="utf-8")) if t["id"] in ("43", "69")]
    data = root / "tasks.json"
    data.write_text(json.dumps(tasks), encoding="utf-8")
    tiers = root / "tiers.toml"
    tiers.write_text(ORDER_TIERS, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp, block_network():
        _clean_env(mp, root / "home")
        result = run_eval(TAU2_RETAIL, _settings(root, str(tiers), dataset_path=data))
        pristine = RetailDB(pristine_db()).state_hash()
    return result, pristine


def test_order_task_success_by_database_state(order_run):
    result, _ = order_run
    quality = {p.policy: {k: (v.successes, v.n) for k, v in p.quality.items()} for p in result.report.policies}
    assert quality["all-slm"] == {"retail_task_success": (0, 2), "db_state_match": (0, 2), "communicate_info": (0, 1)}
    assert quality["all-frontier"] == {"retail_task_success": (2, 2), "db_state_match": (2, 2), "communicate_info": (1, 1)}
    assert quality["tiered"] == {"retail_task_success": (1, 2), "db_state_match": (2, 2), "communicate_info": (0, 1)}
    records = ResultStore(result.out_dir).load("all-frontier")
    cancel = records["tau2_retail-69"]
    assert cancel.output["writes"] == [{"tool": "cancel_pending_order", "args": {"order_id": "#W2417020", "reason": "no longer needed"}, "status": "done"}]
    assert [a["answer"] for a in cancel.answered] == ["yes"] and cancel.answered[0]["interrupt"]["type"] == "confirm"


def test_order_cases_start_from_a_fresh_database(order_run):
    result, pristine = order_run
    # Cases run case-major: task 69 under all-slm runs after task 43's address change was
    # written twice; it writes nothing itself, so it must leave the pristine state.
    untouched = ResultStore(result.out_dir).load("all-slm")["tau2_retail-69"]
    assert untouched.output["writes"] == [] and untouched.output["db_hash"] == pristine
    changed = ResultStore(result.out_dir).load("all-frontier")["tau2_retail-43"]
    assert changed.output["db_hash"] != pristine


def test_order_change_step_truth(order_run):
    result, _ = order_run
    [score] = result.report.policy("tiered").verifier
    assert (score.node, score.tier, score.tp, score.fp, score.fn, score.tn) == ("change", "slm", 0, 0, 0, 2)
    case = next(c for c in TAU2_RETAIL.load(None, None, 0).cases if c.inputs.task_id == "69")
    gold = {"name": "cancel_pending_order", "args": {"order_id": "#W2417020", "reason": "no longer needed"}}
    assert change_is_correct(gold, case) is True
    assert change_is_correct({**gold, "args": {**gold["args"], "reason": "ordered by mistake"}}, case) is False
    assert change_is_correct({"name": "get_order_details", "args": {"order_id": "#W2417020"}}, case) is False


def test_gold_replay_skips_the_refused_lookups(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path))
    case = next(c for c in TAU2_RETAIL.load(None, None, 0).cases if c.inputs.task_id == "2")
    digest, refused = GoldReplay().replay(case)
    assert refused == ["2_1"] and len(digest) == 64
    assert answer_confirmations({"type": "confirm"}) == "yes" and answer_confirmations({"type": "human_review"}) is None


def test_a_suite_that_resets_state_per_case_must_run_one_case_at_a_time():
    import dataclasses

    with pytest.raises(ValueError, match="max_concurrency must be 1"):
        dataclasses.replace(TAU2_RETAIL, max_concurrency=None)
