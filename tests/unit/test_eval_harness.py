"""The eval harness end to end on ticket_triage with SCRIPTED tiers (real graph, real KB,
real helpdesk file, real run folder), plus the metrics arithmetic checked by hand.

The scripted slm / frontier below answer the classify step per message, so every policy's
outcome is known in advance (see CASES): which candidates are right, which fail the
verifier, which escalate and which end with a human.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from tierflow.evals.datasets import Case
from tierflow.evals.datasets.intents import IntentExpected, IntentInputs
from tierflow.evals.evaluators.base import EvaluationResult
from tierflow.evals.evaluators.labels import macro_f1
from tierflow.evals.finetune import export_finetune
from tierflow.evals.harness import (
    AttemptTrace,
    CaseRecord,
    EvalSettings,
    Policy,
    ResultStore,
    StepTrace,
    percentile,
    precision_recall,
    proportion,
    resolve_policies,
    run_eval,
    wilson_interval,
)
from tierflow.evals.harness.report import policy_metrics
from tierflow.evals.harness.stats import bootstrap_estimate, macro_f1_score
from tierflow.evals.suites import get_suite
from tierflow.evals.suites.ticket_triage import BANKING77, CLINC150, routed_away
from tierflow.model_tiers import ConfigError, TierRunContext
from tierflow.model_tiers.testing import block_network, scripted_ladder_toml
from tierflow.tools.datasets import dataset_file

# -- scripted tiers -------------------------------------------------------------------------

OK, WRONG, INVALID, LOWCONF, WRONG_LOW, HOPELESS, EXPLODE = (
    "My card was stolen, please block it",
    "My new card has still not arrived",
    "Why was I charged twice for one coffee",
    "How much does a top up by bank transfer cost",
    "I lost my card on the train yesterday",
    "zzz qqq",
    "please explode",
)
SLOW = "my card takes ages to arrive"  # its slm call takes longer than a test's time budget
# message -> (gold label, the slm's classify reply)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    OK: ("lost_or_stolen_card", {"label": "lost_or_stolen_card", "confidence": 0.95}),
    # Right labels here, and the wrong ones the verifier cannot catch, are the label most
    # similar to the message, so the classifier's soft plausibility check lets them pass.
    WRONG: ("card_arrival", {"label": "card_linking", "confidence": 0.9}),
    INVALID: ("transaction_charged_twice", {"label": "nonsense", "confidence": 0.9}),
    LOWCONF: ("top_up_by_bank_transfer_charge", {"label": "top_up_by_bank_transfer_charge", "confidence": 0.4}),
    WRONG_LOW: ("lost_or_stolen_card", {"label": "card_linking", "confidence": 0.3}),
    HOPELESS: ("card_arrival", {"label": "nonsense", "confidence": 0.9}),
    EXPLODE: ("card_arrival", {"label": "card_arrival", "confidence": 0.9}),
    SLOW: ("card_arrival", {"label": "card_arrival", "confidence": 0.9}),
}
DRAFT = {"reply": "Thank you, we are looking into this for you right away.", "cited": ["S1"]}


def _system(messages: Sequence[BaseMessage]) -> str:
    return next(str(m.content) for m in messages if isinstance(m, SystemMessage))


def _customer_text(messages: Sequence[BaseMessage]) -> str:
    first = next(str(m.content) for m in messages if isinstance(m, HumanMessage))
    return first.split("<<<\n", 1)[1].split("\n>>>", 1)[0]


def _reply(messages: Sequence[BaseMessage], classify: Any) -> Any:
    system = _system(messages)
    if "triage customer messages" in system:
        text = _customer_text(messages)
        if text == EXPLODE:
            raise RuntimeError("scripted crash inside the model")
        if text == SLOW:
            time.sleep(0.5)
        return classify(text)
    if "Copy the entities" in system:
        return {}
    if "support agent" in system:
        return DRAFT
    raise AssertionError(f"no scripted reply for {system[:60]!r}")


def slm_reply(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    return _reply(messages, lambda text: CASES[text][1])


def frontier_reply(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    def classify(text: str) -> dict[str, Any]:
        if text == HOPELESS:
            return {"label": "still nonsense", "confidence": 0.9}
        return {"label": CASES[text][0], "confidence": 0.9}

    return _reply(messages, classify)


TIERS_TOML = scripted_ladder_toml("tests.unit.test_eval_harness:slm_reply", "tests.unit.test_eval_harness:frontier_reply")


def write_banking77(folder: Path, messages: Sequence[str]) -> Path:
    """A Banking77-format CSV of `messages` (gold labels from CASES) with categories.json."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(dataset_file("banking77", "categories.json"), folder / "categories.json")
    path = folder / "cases.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        for text in messages:
            writer.writerow([text, CASES[text][0]])
    return path


def write_tiers(folder: Path, text: str = TIERS_TOML) -> str:
    path = folder / "tiers.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


SIX = (OK, WRONG, INVALID, LOWCONF, WRONG_LOW, HOPELESS)
POLICY_WORDS = ("all-slm", "all-frontier", "tiered", "tiered-conf0.8")


def settings(root: Path, policies: Sequence[str] = POLICY_WORDS, **kw: Any) -> EvalSettings:
    chosen = resolve_policies(policies, defaults=(), thresholds=BANKING77.thresholds, on_top_failure=kw.pop("on_top_failure", None))
    return EvalSettings(policies=tuple(chosen), out_dir=root / "run", tiers_file=str(root / "tiers.toml"), progress=False, concurrency=3, **kw)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One eval of the six cases under four policies, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("eval-smoke")
    with pytest.MonkeyPatch.context() as mp, block_network():
        for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST", "TIERFLOW_TIERS", "TIERFLOW_POLICY"):
            mp.delenv(var, raising=False)
        mp.setenv("TIERFLOW_HOME", str(root / "home"))
        write_tiers(root)
        dataset = write_banking77(root / "data", SIX)
        result = run_eval(BANKING77, settings(root, dataset_path=dataset))
    return result


def by_text(result: Any, policy: str) -> dict[str, CaseRecord]:
    records = ResultStore(result.out_dir).load(policy)
    texts = {f"banking77-cases-{i:05d}": text for i, text in enumerate(SIX)}
    return {texts[cid]: r for cid, r in records.items()}


# -- the smoke run ------------------------------------------------------------------------


def test_report_files_are_written_and_consistent(smoke):
    paths = smoke.paths
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths["json"].read_text())
    assert [p["policy"] for p in data["policies"]] == ["all-slm", "all-frontier", "tiered", "tiered-conf0.80"]
    markdown = paths["markdown"].read_text()
    assert "| tiered-conf0.80 | 6 |" in markdown and "Verifier precision / recall" in markdown
    assert smoke.counts.ran == 24 and smoke.counts.skipped == 0


def test_quality_per_policy_matches_the_script(smoke):
    report = smoke.report
    expected_correct = {"all-slm": 2, "all-frontier": 5, "tiered": 3, "tiered-conf0.80": 4}
    for name, correct in expected_correct.items():
        quality = report.policy(name).quality["exact_label"]
        assert (quality.successes, quality.n) == (correct, 6), name
        assert quality == proportion(correct, 6)
    assert report.policy("tiered").quality["exact_label"].value == 0.5


def test_outcomes_escalations_and_human_handoffs(smoke):
    report = smoke.report
    assert report.policy("all-slm").statuses == {"done": 4, "needs_human": 2}
    assert report.policy("tiered").statuses == {"done": 5, "needs_human": 1}
    assert report.policy("all-slm").escalation_rate.successes == 0
    assert report.policy("tiered").escalation_rate.successes == 2
    assert report.policy("tiered-conf0.80").escalation_rate.successes == 4
    # Escalated classify steps: INVALID is fixed by the frontier, HOPELESS is not.
    success = report.policy("tiered").escalation_success
    assert success is not None and (success.successes, success.n) == (1, 2)
    assert report.policy("all-slm").escalation_success is None
    hopeless = by_text(smoke, "tiered")[HOPELESS]
    assert hopeless.status == "needs_human"
    assert hopeless.interrupt["type"] == "human_review" and hopeless.interrupt["step"] == "classify"
    assert hopeless.output["intent"] is None and hopeless.output["stopped_at"] == "classify"
    rescued = by_text(smoke, "tiered")[INVALID]
    [classify] = [s for s in rescued.steps if s.node == "classify"]
    assert [(a.tier, a.verdict, a.correct) for a in classify.attempts] == [
        ("slm", "fail", False), ("slm", "fail", False), ("frontier", "pass", True)
    ]
    assert classify.decided_by == "frontier" and rescued.output["intent"] == "transaction_charged_twice"


def test_verifier_precision_and_recall_on_the_constructed_cases(smoke):
    def score(policy: str, tier: str) -> tuple[int, int, int, int, float | None, float | None]:
        v = smoke.report.policy(policy).verifier_on("classify", tier)
        return (*v.counts, v.precision, v.recall)

    # slm first candidates: OK right/pass, WRONG wrong/pass, INVALID wrong/fail, LOWCONF right/pass,
    # WRONG_LOW wrong/pass, HOPELESS wrong/fail.
    assert score("tiered", "slm") == (2, 0, 2, 2, 1.0, 0.5)
    # With the 0.8 threshold LOWCONF (right) and WRONG_LOW (wrong) now fail too.
    assert score("tiered-conf0.80", "slm") == (3, 1, 1, 1, 0.75, 0.75)
    assert score("tiered", "frontier") == (1, 0, 0, 1, 1.0, 1.0)
    assert score("all-frontier", "frontier") == (1, 0, 0, 5, 1.0, 1.0)


def test_cost_frontier_share_latency_and_macro_f1_arithmetic(smoke):
    for policy in smoke.report.policies:
        records = list(ResultStore(smoke.out_dir).load(policy.policy).values())
        ledger = [u for r in records for u in r.ledger]
        assert policy.cost_usd_total == pytest.approx(sum(u["cost_usd"] for u in ledger))
        assert policy.cost_usd_total == pytest.approx(sum(row.cost_usd for row in policy.ledger))
        assert policy.cost_usd_per_case == pytest.approx(policy.cost_usd_total / 6)
        frontier = sum(1 for u in ledger if u["tier"] == "frontier")
        assert (policy.calls, policy.frontier_calls) == (len(ledger), frontier)
        assert policy.attempts_without_usage == 0  # even rejected (unparsable) replies are costed
        assert policy.latency_p50_s == percentile([r.wall_s for r in records], 50)
        assert policy.latency_p95_s == percentile([r.wall_s for r in records], 95)
        cases = {c.id: c for c in BANKING77.load(Path(smoke.report.dataset), None, 0).cases}
        pairs = [(cases[r.case_id].expected.label, r.output["intent"]) for r in records]
        assert policy.quality["macro_f1"].value == pytest.approx(macro_f1(pairs).score)
    report = smoke.report
    assert report.policy("all-slm").frontier_call_share == 0.0
    assert report.policy("all-frontier").frontier_call_share == 1.0
    assert report.policy("all-frontier").cost_vs_all_frontier == 1.0
    tiered = report.policy("tiered")
    assert tiered.cost_vs_all_frontier == pytest.approx(tiered.cost_usd_per_case / report.policy("all-frontier").cost_usd_per_case)
    assert 0 < report.policy("all-slm").cost_usd_total < tiered.cost_usd_total


def test_rerun_skips_every_recorded_case(smoke, tmp_path, monkeypatch):
    run = tmp_path / "copy"
    shutil.copytree(smoke.out_dir, run / "run")
    shutil.copy(smoke.out_dir.parent / "tiers.toml", run / "tiers.toml")
    before = {p.name: p.read_text() for p in (run / "run" / "results").iterdir()}
    again = run_eval(BANKING77, settings(run, dataset_path=Path(smoke.report.dataset)))
    assert (again.counts.ran, again.counts.skipped) == (0, 24)
    assert {p.name: p.read_text() for p in (run / "run" / "results").iterdir()} == before
    assert again.report.policy("tiered").quality == smoke.report.policy("tiered").quality

    # A line cut short by a killed process is dropped, and only that case runs again.
    tiered = run / "run" / "results" / "tiered.jsonl"
    lines = tiered.read_text().splitlines(keepends=True)
    tiered.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    # A report over what is recorded compares every policy on the 5 cases they all have.
    partial = run_eval(BANKING77, settings(run, dataset_path=Path(smoke.report.dataset), report_only=True))
    assert partial.counts.ran == 0 and partial.report.sample["cases"] == 5 and partial.report.sample["sampled"] == 6
    assert {p.policy: (p.cases, p.missing) for p in partial.report.policies} == {n: (5, 1) for n in ("all-slm", "all-frontier", "tiered", "tiered-conf0.80")}
    assert "Only 5 of the 6 sampled cases" in partial.paths["markdown"].read_text()
    third = run_eval(BANKING77, settings(run, dataset_path=Path(smoke.report.dataset)))
    assert (third.counts.ran, third.counts.skipped) == (1, 23)
    assert len(tiered.read_text().splitlines()) == 6


def test_export_finetune_writes_the_slm_failed_frontier_passed_steps(smoke, tmp_path):
    out = tmp_path / "ft.jsonl"
    summary = export_finetune(smoke.out_dir, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    # tiered: INVALID; tiered-conf0.80: INVALID again (a duplicate), LOWCONF, WRONG_LOW.
    assert (summary.written, summary.duplicates, dict(summary.by_node)) == (3, 1, {"classify": 3})
    users = sorted(line["messages"][1]["content"] for line in lines)
    # The classify prompt: the message, then the shortlist of candidate labels.
    assert [u.split("\n\nCandidate labels", 1)[0] for u in users] == sorted(f"Customer message:\n<<<\n{t}\n>>>" for t in (INVALID, LOWCONF, WRONG_LOW))
    assert all("Candidate labels (most likely first):\n- " in u for u in users)
    for line in lines:
        system, user, assistant = line["messages"]
        assert set(line) == {"messages", "response_format", "metadata"}
        assert line["metadata"] == {"step": "classify", "prompt": "full", "graph": "ticket_triage"}
        assert line["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"][0] == "card_arrival"
        assert system["role"] == "system" and "triage customer messages" in system["content"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        text = user["content"].split("<<<\n", 1)[1].split("\n>>>", 1)[0]
        assert json.loads(assistant["content"]) == {"label": CASES[text][0], "confidence": 0.9}
    # what `tierflow finetune --data` reads: one full-prompt classify step
    from tierflow.model_tiers.finetune import load_training_file
    from tierflow.model_tiers.finetune.run import prompt_mode_of

    examples = load_training_file(out, step="classify")
    assert len(examples) == 3 and prompt_mode_of(examples) == "full"
    assert examples[0].grammar_tools()[1] == "ClassifyLabel"
    strict = export_finetune(smoke.out_dir, tmp_path / "strict.jsonl", require_correct=True)
    assert strict.written == 3 and strict.not_known_correct == 0


# -- smaller runs -------------------------------------------------------------------------


class Boom:
    name = "boom"

    def evaluate(self, output: Any, case: Any) -> EvaluationResult:
        raise ValueError("grader bug")


def test_a_raising_evaluator_and_a_crashing_graph_are_recorded_not_fatal(tmp_path):
    write_tiers(tmp_path)
    dataset = write_banking77(tmp_path / "data", (OK, EXPLODE))
    suite = dataclasses.replace(BANKING77, evaluators=(*BANKING77.evaluators, Boom()))
    result = run_eval(suite, settings(tmp_path, ("tiered",), dataset_path=dataset))
    records = ResultStore(result.out_dir).load("tiered")
    ok, crashed = records["banking77-cases-00000"], records["banking77-cases-00001"]
    boom = ok.evaluation("boom")
    assert boom is not None and boom.passed is False and "grader bug" in (boom.reason or "")
    assert ok.evaluation("exact_label").passed is True
    assert crashed.status == "error" and "scripted crash inside the model" in (crashed.error or "")
    assert crashed.evaluation("exact_label").passed is False
    assert result.report.policy("tiered").error_rate.successes == 1
    # Errors are skipped on a plain rerun and run again with retry_errors.
    assert run_eval(suite, settings(tmp_path, ("tiered",), dataset_path=dataset)).counts.ran == 0
    assert run_eval(suite, settings(tmp_path, ("tiered",), dataset_path=dataset, retry_errors=True)).counts.ran == 1


def test_on_top_failure_fail_records_a_typed_failure_and_is_part_of_the_run_identity(tmp_path):
    write_tiers(tmp_path)
    dataset = write_banking77(tmp_path / "data", (HOPELESS,))
    result = run_eval(BANKING77, settings(tmp_path, ("tiered",), dataset_path=dataset, on_top_failure="fail"))
    [record] = ResultStore(result.out_dir).load("tiered").values()
    assert record.status == "failed" and record.interrupt is None
    assert record.output["stopped_at"] == "classify" and routed_away(record.output)
    with pytest.raises(ConfigError, match="policy 'tiered' with run context"):
        run_eval(BANKING77, settings(tmp_path, ("tiered",), dataset_path=dataset))


def test_a_run_folder_refuses_results_of_other_tiers(tmp_path):
    write_tiers(tmp_path)
    dataset = write_banking77(tmp_path / "data", (OK,))
    run_eval(BANKING77, settings(tmp_path, ("all-slm",), dataset_path=dataset))
    write_tiers(tmp_path, TIERS_TOML.replace("price_input_per_mtok = 0.1", "price_input_per_mtok = 0.2"))
    with pytest.raises(ConfigError, match="different tier configuration"):
        run_eval(BANKING77, settings(tmp_path, ("all-slm",), dataset_path=dataset))


# -- metrics arithmetic, by hand ----------------------------------------------------------


def test_wilson_interval_matches_the_hand_computation():
    # 8/10: centre (0.8 + 1.92/10) / 1.384 = 0.7167; half 1.96*sqrt(0.016 + 0.0096)/1.384 = 0.2266
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert proportion(0, 0).value is None


def test_percentiles_interpolate_linearly():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile(list(range(1, 21)), 95) == pytest.approx(19.05)
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) is None


def test_precision_recall_and_fast_macro_f1_agree_with_the_evaluator():
    assert precision_recall(3, 1, 1) == (0.75, 0.75)
    assert precision_recall(0, 0, 2) == (None, 0.0)
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("c", None), ("c", "c"), ("b", "d")]
    assert macro_f1_score(pairs) == pytest.approx(macro_f1(pairs).score)
    estimate = bootstrap_estimate(pairs, macro_f1_score)
    assert estimate == bootstrap_estimate(pairs, macro_f1_score)  # fixed seed: reproducible
    assert estimate.low <= estimate.value <= estimate.high


def _record(case_id: str, wall: float, ledger: list[tuple[str, float]], *, status: str = "done", escalations: int = 0,
            passed: bool = True, attempts: Sequence[tuple[str, str, bool]] = ()) -> CaseRecord:
    return CaseRecord(
        case_id=case_id, policy="p", status=status, thread_id=case_id, wall_s=wall, escalations=escalations,
        ledger=[{"tier": tier, "cost_usd": cost, "latency_s": 0.5, "node": "classify", "step": "0:classify", "attempt": i + 1,
                 "verdict": "pass", "input_tokens": 10, "output_tokens": 2} for i, (tier, cost) in enumerate(ledger)],
        evaluations=[EvaluationResult(name="exact_label", score=float(passed), passed=passed)],
        output={"intent": "x" if passed else None},
        steps=[StepTrace(item_id="0:classify", node="classify", attempts=[AttemptTrace(attempt=i + 1, tier=t, verdict=v, correct=c) for i, (t, v, c) in enumerate(attempts)])],
    )


def test_policy_metrics_on_constructed_records():
    records = [
        _record("a", 1.0, [("slm", 0.001)], attempts=[("slm", "pass", True)]),
        _record("b", 2.0, [("slm", 0.001), ("slm", 0.001), ("frontier", 0.010)], escalations=1,
                attempts=[("slm", "fail", False), ("slm", "fail", False), ("frontier", "pass", True)]),
        _record("c", 3.0, [("slm", 0.001)], passed=False, attempts=[("slm", "pass", False)]),
        _record("d", 10.0, [("slm", 0.001), ("frontier", 0.010)], status="needs_human", passed=False,
                attempts=[("slm", "fail", True), ("frontier", "fail", False)]),
    ]
    cases = {r.case_id: Case(id=r.case_id, inputs=IntentInputs(text="t"), expected=IntentExpected(label="x")) for r in records}
    metrics = policy_metrics(BANKING77, Policy("p", TierRunContext(policy="tiered")), records, cases, frontier_tier="frontier", expected_cases=5)
    assert (metrics.cases, metrics.missing) == (4, 1)
    assert metrics.cost_usd_total == pytest.approx(0.025) and metrics.cost_usd_per_case == pytest.approx(0.00625)  # 5 x 0.001 + 2 x 0.010
    assert (metrics.calls, metrics.frontier_calls, metrics.frontier_call_share) == (7, 2, 2 / 7)
    assert metrics.attempts_without_usage == 0
    unaccounted = _record("e", 1.0, [], attempts=[("slm", "fail", False)])  # the provider raised before reporting usage
    assert policy_metrics(BANKING77, Policy("p", TierRunContext()), [unaccounted], cases | {"e": cases["a"]},
                          frontier_tier="frontier", expected_cases=1).attempts_without_usage == 1
    assert metrics.latency_p50_s == 2.5 and metrics.latency_p95_s == pytest.approx(8.95)  # 3 + 0.85 * (10 - 3)
    assert metrics.model_latency_p50_s == pytest.approx(0.75)  # per-case sums 0.5, 1.5, 0.5, 1.0
    assert (metrics.escalation_rate.successes, metrics.human_rate.successes) == (1, 1)
    assert metrics.quality["exact_label"] == proportion(2, 4)
    [slm] = [v for v in metrics.verifier if v.tier == "slm"]
    # First slm candidates: a pass&right, b fail&wrong, c pass&wrong, d fail&right.
    assert (slm.tp, slm.fp, slm.fn, slm.tn, slm.precision, slm.recall) == (1, 1, 1, 1, 0.5, 0.5)
    [top] = [v for v in metrics.verifier if v.tier == "frontier"]
    assert (top.tp, top.tn, top.judged) == (1, 1, 2)


# -- policies and suites ------------------------------------------------------------------


def test_policies_parse_names_thresholds_and_sweeps():
    chosen = resolve_policies(["tiered-conf0.7", "all-slm", "tiered-conf0.70"], defaults=(), thresholds=(0.5,), on_top_failure="fail")
    assert [p.name for p in chosen] == ["tiered-conf0.70", "all-slm"]
    assert chosen[0].context == TierRunContext(policy="tiered", confidence_threshold=0.7, on_top_failure="fail")
    assert [p.name for p in resolve_policies(["sweep"], defaults=(), thresholds=(0.5, 0.9))] == ["tiered-conf0.50", "tiered-conf0.90"]
    assert [p.name for p in resolve_policies(None, defaults=BANKING77.default_policies)] == ["all-slm", "all-frontier", "tiered"]
    with pytest.raises(ConfigError, match="unknown policy 'cheap'"):
        resolve_policies(["cheap"], defaults=())
    with pytest.raises(ConfigError, match="no step"):
        resolve_policies(["tiered-conf0.5"], defaults=(), thresholds=())


def test_suite_is_picked_by_name_or_dataset_path():
    assert get_suite("ticket_triage") is BANKING77
    assert get_suite("ticket_triage", dataset_path="/data/clinc150/train_val.json") is CLINC150
    assert get_suite("ticket_triage", "clinc150") is CLINC150
    with pytest.raises(ConfigError, match="no suite 'nope'"):
        get_suite("ticket_triage", "nope")
    with pytest.raises(ConfigError, match="no eval suite for graph"):
        get_suite("no_such_graph")


def test_clinc150_suite_is_balanced_and_grades_scope_routing():
    dataset = CLINC150.load(None, None, 0)
    oos = [c for c in dataset.cases if c.expected.out_of_scope]
    assert len(oos) == 100 and len(dataset.cases) == 200
    assert {c.metadata["domain"] for c in dataset.cases if not c.expected.out_of_scope} <= {"banking", "credit_cards"}
    in_case, oos_case = next(c for c in dataset.cases if not c.expected.out_of_scope), oos[0]
    grade = {e.name: e for e in CLINC150.evaluators}

    def results(output: dict[str, Any], case: Any) -> dict[str, bool | None]:
        return {name: e.evaluate(output, case).passed for name, e in grade.items()}

    other = {"intent": "other", "status": "done", "stopped_at": None}
    human = {"intent": None, "status": "needs_human", "stopped_at": "classify"}
    banking = {"intent": "card_arrival", "status": "done", "stopped_at": None}
    late_human = {"intent": "card_arrival", "status": "needs_human", "stopped_at": "draft"}
    assert results(other, oos_case) == {"scope_correct": True, "oos_routed": True, "in_scope_kept": None}
    assert results(human, oos_case)["oos_routed"] is True
    assert results(banking, oos_case)["oos_routed"] is False and results(late_human, oos_case)["oos_routed"] is False
    assert results(banking, in_case) == {"scope_correct": True, "oos_routed": None, "in_scope_kept": True}
    assert results(human, in_case)["in_scope_kept"] is False
    [balanced] = CLINC150.aggregates
    assert balanced.compute([(oos_case, other), (oos_case, banking), (in_case, banking)]) == pytest.approx(0.75)


def test_the_plot_takes_an_interval_that_does_not_contain_its_estimate(smoke, tmp_path):
    """A bootstrap interval may lie above its point estimate (every policy at 0%)."""
    from tierflow.evals.harness.report import plot_cost_quality
    from tierflow.evals.harness.stats import Estimate

    report = smoke.report
    odd = Estimate(value=0.0, low=0.02, high=0.1, n=3, method="bootstrap")
    policies = [p.model_copy(update={"quality": {**p.quality, report.primary: odd}}) for p in report.policies]
    path = plot_cost_quality(report.model_copy(update={"policies": policies}), tmp_path / "plot.png")
    assert path.stat().st_size > 1000


def test_clinc150_split_is_chosen_and_a_missing_one_is_named():
    from tierflow.evals.datasets import DatasetFormatError
    from tierflow.evals.suites.ticket_triage import BANKING77
    from tierflow.model_tiers import ConfigError

    val = CLINC150.load_cases(None, 20, 0)
    train = CLINC150.load_cases(None, 20, 0, "train")
    assert len(train.cases) == 20 and not {c.id for c in train.cases} & {c.id for c in val.cases}
    with pytest.raises(DatasetFormatError, match=r"split key\(s\) \['test', 'oos_test'\] not in the file"):
        CLINC150.load_cases(None, 20, 0, "test")  # the visible file holds train and val only
    with pytest.raises(ConfigError, match="has no split 'dev'; its splits: val, test, train"):
        CLINC150.load_cases(None, 20, 0, "dev")
    with pytest.raises(ConfigError, match="reads one split"):
        BANKING77.load_cases(None, 5, 0, "test")


def test_a_case_past_its_time_budget_is_stopped_and_recorded_as_an_error(tmp_path):
    write_tiers(tmp_path)
    dataset = write_banking77(tmp_path / "data", (OK, SLOW))
    result = run_eval(BANKING77, settings(tmp_path, ("all-slm",), dataset_path=dataset, case_timeout_s=0.3))
    records = ResultStore(result.out_dir).load("all-slm")
    slow, ok = records["banking77-cases-00001"], records["banking77-cases-00000"]
    assert slow.status == "error" and "time budget of 0.3 s" in (slow.error or "")
    assert ok.status == "done"
    with pytest.raises(ConfigError, match="--case-timeout must be a positive"):
        run_eval(BANKING77, settings(tmp_path, ("all-slm",), dataset_path=dataset, case_timeout_s=0))
