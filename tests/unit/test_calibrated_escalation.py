"""Calibrated escalation on the real engine: the artifact's check and router, read from a
tiers file, decide where math_qa's `solve` runs (replay tiers: real recorded Mixtral and
GPT-4 answers), and `tierflow calibrate` writes such an artifact from an eval run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.cli import tierflow
from tests.conftest import REPO_ROOT
from tests.unit.calibration_artifacts import constant_model, math_qa_artifact
from tests.unit.test_math_qa_graph import RIGHT, row_starting
from tierflow.agents.calibration import CalibratedCheck, CalibrationArtifact, Router, StepCalibration
from tierflow.graphs.math_qa import build
from tierflow.model_tiers import ConfigError, TierRegistry, load_tier_config

TIERS = REPO_ROOT / "tiers" / "replay_gsm8k.toml"


def _tiers_with(tmp_path: Path, step: StepCalibration, name: str = "solve") -> Path:
    artifact = math_qa_artifact({name: step})
    (tmp_path / "cal").mkdir(exist_ok=True)
    (tmp_path / "cal" / "a.json").write_text(artifact.model_dump_json(), encoding="utf-8")
    text = TIERS.read_text(encoding="utf-8").replace("[escalation]\n", '[escalation]\ncalibration = "cal/a.json"\n', 1)
    path = tmp_path / "tiers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(tiers: Path, **context: Any) -> dict[str, Any]:
    graph = build(registry=TierRegistry(load_tier_config(tiers, env={}), env={}), resources={})
    return graph.invoke({"request": row_starting(RIGHT)["prompt"]}, context=context or None)


def test_a_low_calibrated_probability_sends_a_checked_answer_up(tmp_path: Path) -> None:
    out = _run(_tiers_with(tmp_path, StepCalibration(check=CalibratedCheck(tier="slm", escalate_below=0.6, model=constant_model(0.5)))))
    slm, frontier = out["ledger"]
    assert (slm["tier"], slm["verdict"]) == ("slm", "fail")
    assert slm["reason"].startswith("calibration: calibrated p(right) 0.50 is below 0.60")
    # The verdict's numbers are recorded with it: the arithmetic check's raw scores and p.
    assert slm["signals"]["p_right"] == pytest.approx(0.5)
    assert slm["signals"]["check.arithmetic re-check.pass"] == 1.0
    assert (frontier["tier"], frontier["verdict"]) == ("frontier", "pass")
    assert out["final"]["answered_by"] == "frontier"


def test_a_high_calibrated_probability_keeps_the_slm_answer(tmp_path: Path) -> None:
    out = _run(_tiers_with(tmp_path, StepCalibration(check=CalibratedCheck(tier="slm", escalate_below=0.4, model=constant_model(0.5)))))
    assert [(u["tier"], u["verdict"]) for u in out["ledger"]] == [("slm", "pass")]


def test_with_no_higher_tier_the_calibrated_doubt_is_a_warning(tmp_path: Path) -> None:
    tiers = _tiers_with(tmp_path, StepCalibration(check=CalibratedCheck(tier="slm", escalate_below=0.6, model=constant_model(0.5))))
    out = _run(tiers, policy="all-slm")
    assert [(u["tier"], u["verdict"]) for u in out["ledger"]] == [("slm", "pass")]
    verdict = next(e for e in out["events"] if e["type"] == "verdict")
    assert any(w.startswith("calibration:") for w in verdict["warnings"])


def test_the_router_starts_a_hopeless_input_one_tier_up(tmp_path: Path) -> None:
    out = _run(_tiers_with(tmp_path, StepCalibration(router=Router(tier="slm", skip_above=0.4, model=constant_model(0.5)))))
    assert [(u["tier"], u["verdict"]) for u in out["ledger"]] == [("frontier", "pass")]
    skip = next(e for e in out["events"] if e["type"] == "skip_tier")
    assert (skip["from"], skip["to"]) == ("slm", "frontier") and skip["p_fail"] == pytest.approx(0.5)
    # Below its threshold the router lets the slm try.
    out = _run(_tiers_with(tmp_path, StepCalibration(router=Router(tier="slm", skip_above=0.6, model=constant_model(0.5)))))
    assert out["ledger"][0]["tier"] == "slm"


def test_another_steps_calibration_changes_nothing(tmp_path: Path) -> None:
    step = StepCalibration(router=Router(tier="slm", skip_above=0.0, model=constant_model(0.9)))
    out = _run(_tiers_with(tmp_path, step, name="other_step"))
    assert out["ledger"][0]["tier"] == "slm"


def test_a_missing_or_broken_artifact_is_a_configuration_error(tmp_path: Path) -> None:
    text = TIERS.read_text(encoding="utf-8").replace("[escalation]\n", '[escalation]\ncalibration = "nowhere.json"\n', 1)
    path = tmp_path / "tiers.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"nowhere\.json, which does not exist"):
        load_tier_config(path, env={})
    (tmp_path / "nowhere.json").write_text("{}", encoding="utf-8")
    graph = build(registry=TierRegistry(load_tier_config(path, env={}), env={}), resources={})
    with pytest.raises(ConfigError, match="not a tierflow calibration artifact"):
        graph.invoke({"request": row_starting(RIGHT)["prompt"]})


@pytest.fixture
def replay_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OLLAMA_HOST", "TIERFLOW_TIERS")}
    env.update({"TIERFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)})
    return env


def test_calibrate_writes_an_artifact_the_tiered_policy_uses(replay_env: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = tierflow(replay_env, "--tiers", str(TIERS), "eval", "math_qa", "--policy", "all-slm", "all-frontier", "--limit", "160", "--out", str(run), "--no-progress")
    assert done.returncode == 0, done.stderr
    artifact = tmp_path / "tiers" / "cal.json"
    done = tierflow(replay_env, "calibrate", str(run), "--target", "0.95", "--out", str(artifact))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "solve (slm)" in done.stdout and "cost saved" in done.stdout and "Traceback" not in done.stderr
    loaded = CalibrationArtifact.model_validate_json(artifact.read_text(encoding="utf-8"))
    assert loaded.graph == "math_qa" and "solve" in loaded.steps
    report = tmp_path / "tiers" / "cal_report"
    assert (report / "report.md").is_file() and (report / "solve.png").is_file()
    tiers = tmp_path / "tiers" / "calibrated.toml"
    tiers.write_text(TIERS.read_text(encoding="utf-8").replace("[escalation]\n", '[escalation]\ncalibration = "cal.json"\n', 1), encoding="utf-8")
    done = tierflow(replay_env, "--tiers", str(tiers), "eval", "math_qa", "--policy", "tiered", "--limit", "12", "--out", str(tmp_path / "run2"), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr


def test_calibrate_refuses_to_fit_noise_and_names_what_is_missing(replay_env: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "small"
    done = tierflow(replay_env, "--tiers", str(TIERS), "eval", "math_qa", "--policy", "all-slm", "--limit", "12", "--out", str(run), "--no-progress")
    assert done.returncode == 0, done.stderr
    done = tierflow(replay_env, "calibrate", str(run))
    assert done.returncode == 2 and "no 'all-frontier' results" in done.stderr and "--policy all-frontier" in done.stderr
    done = tierflow(replay_env, "--tiers", str(TIERS), "eval", "math_qa", "--policy", "all-frontier", "--limit", "12", "--out", str(run), "--no-progress")
    assert done.returncode == 0, done.stderr
    done = tierflow(replay_env, "calibrate", str(run))
    assert done.returncode == 1 and "fitted on noise" in done.stdout and "no artifact written" in done.stdout
    assert not (run / "calibration.json").exists()
    done = tierflow(replay_env, "calibrate", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "not an eval run folder" in done.stderr
