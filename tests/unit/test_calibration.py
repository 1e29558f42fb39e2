"""Calibration: fitting, choosing the setting, the artifact as served, and the messages for
runs too small to calibrate (synthetic tables; the run-folder path is in
test_calibrate_command.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.unit.calibration_artifacts import math_qa_artifact
from tierflow.agents.calibration import (
    CalibratedCheck,
    Calibrator,
    Ensemble,
    ProbabilityModel,
    Router,
    StepCalibration,
    answer_text,
    load_calibration,
)
from tierflow.agents.signals import attempt_signals, check_scores
from tierflow.agents.spec import Check, PlanItem, StepInput, StepKind, StepSpec
from tierflow.evals.calibrate.choose import choose, evaluate, outcomes_of
from tierflow.evals.calibrate.command import CalibrateOptions, _calibrate_step
from tierflow.evals.calibrate.fit import FitSettings, expected_calibration_error, fit_probability, predict
from tierflow.evals.calibrate.table import StepSample, StepTable, split_cases
from tierflow.model_tiers import ConfigError

WORDS_HARD = ["integral", "eigenvalue", "theorem", "lemma", "manifold"]
WORDS_EASY = ["apple", "count", "sum", "cat", "dog"]


def _samples(n: int, seed: int = 0) -> list[StepSample]:
    """Cases where the cheap tier fails mostly on 'hard' words and on low scores."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hard = rng.random() < 0.4
        words = rng.choice(WORDS_HARD if hard else WORDS_EASY, size=4)
        score = float(rng.random())
        p_right = (0.35 if hard else 0.9) * (0.6 + 0.4 * score)
        right = bool(rng.random() < p_right)
        passed = bool(rng.random() < 0.9)
        out.append(
            StepSample(
                case_id=f"c{i}", item_id="p1:solve", text=" ".join(words), signals={"check.x.score": score, "input_chars": 40.0},
                passed=passed, cheap_correct=right, ref_correct=bool(rng.random() < 0.92), cheap_cost=0.01, ref_cost=0.2,
            )
        )
    return out


def test_out_of_fold_probabilities_are_calibrated_and_rank_the_answers() -> None:
    samples = _samples(600)
    fitted = fit_probability([s.signals for s in samples], [s.text for s in samples], [s.cheap_correct for s in samples], FitSettings())
    y = np.array([s.cheap_correct for s in samples], dtype=float)
    assert expected_calibration_error(fitted.oof, y) < 0.08
    hard = np.array([s.text.split()[0] in WORDS_HARD for s in samples])
    assert fitted.oof[hard].mean() < fitted.oof[~hard].mean() - 0.3
    assert all(m.calibrator.method == "isotonic" for m in fitted.model.members)


def test_served_probability_equals_the_vectorised_fit_prediction() -> None:
    samples = _samples(300)
    fitted = fit_probability([s.signals for s in samples], [s.text for s in samples], [s.cheap_correct for s in samples], FitSettings())
    batch = predict(fitted.model, [s.signals for s in samples[:20]], [s.text for s in samples[:20]])
    one_by_one = [fitted.model.probability(s.signals, s.text) for s in samples[:20]]
    assert np.allclose(batch, one_by_one, atol=1e-9)
    # A JSON round trip serves the same numbers (no pickle, no fitted vocabulary).
    again = Ensemble.model_validate_json(fitted.model.model_dump_json())
    assert math.isclose(again.probability(samples[0].signals, samples[0].text), one_by_one[0], abs_tol=1e-12)


def test_choose_meets_the_target_at_the_least_cost() -> None:
    samples = _samples(500, seed=3)
    o = outcomes_of(samples)
    p = np.array([0.2 if s.text.split()[0] in WORDS_HARD else 0.9 for s in samples])
    # On outcomes (expected=False), the choice is exact: the cheapest that meets the target.
    chosen = choose(o, p, None, 0.95, expected=False)
    assert chosen is not None
    assert chosen.quality_ratio >= 0.95
    # Every other threshold that meets the target costs at least as much.
    for t in np.linspace(0, 1, 41):
        s = evaluate(o, p, None, float(t), None)
        if s.quality_ratio >= 0.95:
            assert s.cost >= chosen.cost - 1e-12


def test_router_is_chosen_only_where_it_saves_cost() -> None:
    samples = _samples(500, seed=4)
    o = outcomes_of(samples)
    useless = np.full(len(samples), 0.5)  # a router that knows nothing
    with_router = choose(o, None, useless, 0.95)
    without = choose(o, None, None, 0.95)
    if with_router is not None and without is not None:
        assert with_router.cost <= without.cost
    rng = np.random.default_rng(5)
    hard = rng.random(400) < 0.4
    split = [
        StepSample(case_id=f"c{i}", item_id="p1:a", text="", signals={}, passed=True, cheap_correct=bool(rng.random() < (0.2 if h else 0.97)),
                   ref_correct=bool(rng.random() < 0.9), cheap_cost=0.01, ref_cost=0.2)
        for i, h in enumerate(hard)
    ]
    informative = np.where(hard, 0.9, 0.1)
    routed = choose(outcomes_of(split), None, informative, 0.95)
    assert routed is not None and routed.skip_above is not None
    assert abs(routed.routed - hard.mean()) < 1e-9  # exactly the hard inputs go straight up
    assert routed.cost_saved > 0.4


def test_a_run_too_small_gets_a_message_not_a_threshold() -> None:
    table = StepTable(step="solve", tier="slm", samples=_samples(25))
    result = _calibrate_step(table, CalibrateOptions(bootstrap_rounds=20))
    assert result.calibration is None
    assert "fitted on noise" in (result.message or "")
    assert "25 answers" in (result.message or "")


def test_calibrate_step_writes_a_check_and_interval() -> None:
    table = StepTable(step="solve", tier="slm", samples=_samples(400, seed=5))
    result = _calibrate_step(table, CalibrateOptions(bootstrap_rounds=40, holdout=0.3))
    assert result.chosen is not None and (result.chosen.expected_ratio or 0) >= 0.95
    assert result.chosen.quality_ratio >= 0.9  # observed out of fold: near the expectation
    interval = result.figures["interval_95"]
    assert interval["cost_saved"][0] <= result.chosen.cost_saved <= interval["cost_saved"][1]
    assert result.figures["held_out"]["cases"] > 60
    assert result.calibration is not None


def test_split_cases_keeps_whole_cases_and_is_seeded() -> None:
    samples = _samples(200)
    fit, held = split_cases(samples, 0.5, seed=1)
    assert {s.case_id for s in fit}.isdisjoint({s.case_id for s in held})
    assert 60 < len(held) < 140
    assert split_cases(samples, 0.5, seed=1)[1] == held


def _model() -> ProbabilityModel:
    return ProbabilityModel(
        signals=["check.x.score"], means=[0.5], scales=[0.25], coef=[2.0], intercept=0.0,
        calibrator=Calibrator(method="sigmoid", a=-1.0, b=0.0),
    )


def test_artifact_round_trip_and_bad_files(tmp_path) -> None:
    artifact = math_qa_artifact(
        {"solve": StepCalibration(check=CalibratedCheck(tier="slm", escalate_below=0.5, model=Ensemble(members=[_model()])),
                                  router=Router(tier="slm", skip_above=0.9, model=Ensemble(members=[_model(), _model()])))},
    )
    path = tmp_path / "cal.json"
    path.write_text(artifact.model_dump_json(), encoding="utf-8")
    loaded = load_calibration(path)
    assert loaded.for_step("solve").check.model.probability({"check.x.score": 1.0}, "") > 0.9
    assert loaded.for_step("other") is None
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"format": "tierflow.calibration/1", "steps": {}}), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a tierflow calibration artifact"):
        load_calibration(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_calibration(tmp_path / "missing.json")
    with pytest.raises(ValueError):
        ProbabilityModel(signals=["a"], means=[0.0], scales=[1.0], coef=[1.0, 2.0], intercept=0.0, calibrator=Calibrator(method="sigmoid"))


def test_signals_record_each_check_and_its_scores() -> None:
    def fails(value, inp):
        return "too small" if value["n"] < 3 else None

    check = Check("size", fails, scores=lambda value, inp: {"n": value["n"], "nan": float("nan")})
    spec = StepSpec(name="s", kind=StepKind.TOOL, role="tool", client_tools=True)
    inp = StepInput(request="r", results={}, item=PlanItem(id="p1:s", step="s"), resources={})
    outcomes = [(check, fails({"n": 2}, inp))]
    assert check_scores(outcomes, {"n": 2}, inp) == {"check.size.pass": 0.0, "check.size.n": 2.0}
    signals = attempt_signals(spec, {"n": 2}, {"n": 2}, inp, "hello", {"output_tokens": 7, "confidence": 0.25}, outcomes)
    assert signals["input_chars"] == 5.0 and signals["output_tokens"] == 7.0 and signals["logprob_confidence"] == 0.25


def test_the_answer_words_feed_the_check_and_are_served_the_same() -> None:
    samples = _samples(300, seed=7)
    # The cheap answer says "unsure" when it is wrong, more often than not.
    rng = np.random.default_rng(7)
    answers = ["unsure " + s.text if (not s.cheap_correct and rng.random() < 0.7) else s.text for s in samples]
    y = [s.cheap_correct for s in samples]
    with_answers = fit_probability([s.signals for s in samples], [s.text for s in samples], y, FitSettings(), answers=answers)
    without = fit_probability([s.signals for s in samples], [s.text for s in samples], y, FitSettings())
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, with_answers.oof) > roc_auc_score(y, without.oof) + 0.05
    served = with_answers.model.probability(samples[0].signals, samples[0].text, answers[0])
    batch = predict(with_answers.model, [samples[0].signals], [samples[0].text], [answers[0]])
    assert math.isclose(served, float(batch[0]), abs_tol=1e-9)
    assert answer_text({"solution": "2 + 2 = 4", "final_answer": "4", "n": [1, None]}) == "2 + 2 = 4 4 1 "


def test_strict_choice_also_meets_the_target_on_outcomes_and_costs_no_less() -> None:
    table = StepTable(step="solve", tier="slm", samples=_samples(400, seed=9))
    plain = _calibrate_step(table, CalibrateOptions(bootstrap_rounds=10))
    strict = _calibrate_step(table, CalibrateOptions(bootstrap_rounds=10, strict=True))
    assert plain.chosen is not None and strict.chosen is not None
    assert strict.chosen.quality_ratio >= 0.95 - 1e-9 and (strict.chosen.expected_ratio or 0) >= 0.95 - 1e-9
    assert strict.chosen.cost >= plain.chosen.cost - 1e-12
