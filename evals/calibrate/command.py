"""`tierflow calibrate RUN_DIR --target 0.95 [--of all-frontier]`: per step, fit when the
cheap tier's answer can be trusted and when to skip it, choose the cheapest setting that
keeps the target quality, and write it as an artifact a tiers file references.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tierflow.agents.calibration import ARTIFACT_FORMAT, CalibratedCheck, CalibrationArtifact, Router, StepCalibration
from tierflow.evals.calibrate.choose import Setting, bootstrap, choose, curve, evaluate, outcomes_of
from tierflow.evals.calibrate.fit import FitSettings, Fitted, expected_calibration_error, fit_probability, predict, reliability_bins
from tierflow.evals.calibrate.table import StepSample, StepTable, load_tables, split_cases
from tierflow.evals.harness.records import utc_now
from tierflow.model_tiers import ConfigError
from tierflow.tools.datasets import datasets_dir

__all__ = ["CalibrateOptions", "StepResult", "CalibrationRun", "calibrate_run", "ROUTER_SIGNALS"]

# The router decides before any call: it may only see the input.
ROUTER_SIGNALS = ("input_chars",)


@dataclass(frozen=True)
class CalibrateOptions:
    target: float = 0.95
    reference: str = "all-frontier"
    cheap_policy: str | None = None
    holdout: float = 0.0
    min_cases: int = 40
    min_class: int = 8
    router: bool = True
    # Also meet the target on the out-of-fold outcomes (a margin; see choose.choose).
    strict: bool = False
    bootstrap_rounds: int = 300
    fit: FitSettings = FitSettings()


@dataclass
class StepResult:
    step: str
    tier: str
    message: str | None = None  # why nothing was fitted, or a caveat
    calibration: StepCalibration | None = None
    chosen: Setting | None = None
    baseline: Setting | None = None  # the plain tiered policy: checks only, no calibration
    check_curve: list[Setting] = field(default_factory=list)
    router_curve: list[Setting] = field(default_factory=list)
    reliability: list[tuple[float, float, int]] = field(default_factory=list)
    router_reliability: list[tuple[float, float, int]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class CalibrationRun:
    artifact: CalibrationArtifact
    steps: list[StepResult]
    left_out: dict[str, dict[str, int]]


def _setting_figures(s: Setting | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "escalate_below": s.escalate_below, "skip_above": s.skip_above, "quality": round(s.quality, 4),
        "reference_quality": round(s.ref_quality, 4), "quality_ratio": round(s.quality_ratio, 4),
        "expected_quality_ratio": None if s.expected_ratio is None else round(s.expected_ratio, 4),
        "cost_saved": round(s.cost_saved, 4), "escalated": round(s.escalated, 4), "routed": round(s.routed, 4),
    }


def _too_small(samples: list[StepSample], labels: list[bool], options: CalibrateOptions) -> str | None:
    right = sum(labels)
    wrong = len(labels) - right
    if len(samples) < options.min_cases or min(right, wrong) < options.min_class:
        return (
            f"{len(samples)} answers ({right} right, {wrong} wrong); a fit needs at least {options.min_cases} "
            f"with {options.min_class} of each, or its threshold would be fitted on noise"
        )
    return None


def _calibrate_step(table: StepTable, options: CalibrateOptions) -> StepResult:
    result = StepResult(step=table.step, tier=table.tier)
    fit_part, held = split_cases(table.samples, options.holdout, options.fit.seed)
    if not fit_part:
        result.message = "no case with ground truth for this step and a reference answer: nothing to calibrate"
        return result
    outcomes = outcomes_of(fit_part)
    passed = [s for s in fit_part if s.passed]
    check_fit: Fitted | None = None
    why_no_check = _too_small(passed, [s.cheap_correct for s in passed], options)
    if why_no_check is None:
        check_fit = fit_probability(
            [s.signals for s in passed], [s.text for s in passed], [s.cheap_correct for s in passed], options.fit,
            answers=[s.answer for s in passed],
        )
    router_fit: Fitted | None = None
    why_no_router = _too_small(fit_part, [not s.cheap_correct for s in fit_part], options) if options.router else "off (--no-router)"
    if why_no_router is None:
        router_fit = fit_probability(
            [{k: s.signals[k] for k in ROUTER_SIGNALS if k in s.signals} for s in fit_part],
            [s.text for s in fit_part], [not s.cheap_correct for s in fit_part], options.fit, names=ROUTER_SIGNALS,
        )
    if check_fit is None and router_fit is None:
        result.message = f"not calibrated: check: {why_no_check}; router: {why_no_router}"
        return result

    p_right = np.ones(len(fit_part))
    if check_fit is not None:
        p_right[np.flatnonzero(outcomes.passed)] = check_fit.oof
    p_fail = router_fit.oof if router_fit is not None else None
    result.baseline = evaluate(outcomes, None, None, None, None)
    chosen = choose(outcomes, p_right if check_fit is not None else None, p_fail, options.target, strict=options.strict)
    if check_fit is not None:
        result.check_curve = curve(outcomes, p_right, router=False)
        result.reliability = reliability_bins(check_fit.oof, outcomes.cheap_correct[outcomes.passed])
    if router_fit is not None:
        result.router_curve = curve(outcomes, router_fit.oof, router=True)
        result.router_reliability = reliability_bins(router_fit.oof, 1 - outcomes.cheap_correct)
    figures: dict[str, Any] = {
        "cases": len(fit_part),
        "passed_checks": len(passed),
        "baseline": _setting_figures(result.baseline),
        "check_ece": expected_calibration_error(check_fit.oof, outcomes.cheap_correct[outcomes.passed]) if check_fit else None,
        "router_ece": expected_calibration_error(router_fit.oof, 1 - outcomes.cheap_correct) if router_fit else None,
        "check": why_no_check or "fitted",
        "router": why_no_router or "fitted",
    }
    if chosen is None:
        result.message = (
            f"no setting reaches {options.target:.0%} of '{options.reference}' quality on these cases, even escalating every answer"
        )
        result.figures = figures
        return result
    result.chosen = chosen
    figures["chosen"] = _setting_figures(chosen)
    figures["interval_95"] = bootstrap(
        outcomes, p_right if check_fit is not None else None, p_fail, chosen, options.target,
        rounds=options.bootstrap_rounds, seed=options.fit.seed, strict=options.strict,
    )
    check = None
    if check_fit is not None and chosen.escalate_below is not None and chosen.escalate_below > 0:
        check = CalibratedCheck(tier=table.tier, escalate_below=chosen.escalate_below, model=check_fit.model)
    router = None
    if router_fit is not None and chosen.skip_above is not None:
        router = Router(tier=table.tier, skip_above=chosen.skip_above, model=router_fit.model)
    if held:
        figures["held_out"] = _held_out(held, check, router)
    result.figures = figures
    result.calibration = StepCalibration(check=check, router=router, estimate=figures)
    return result


def _held_out(held: list[StepSample], check: CalibratedCheck | None, router: Router | None) -> dict[str, Any]:
    """The artifact as it will be served, on the cases it was not fitted on."""
    o = outcomes_of(held)
    p_right = None
    if check is not None:
        p_right = np.ones(len(held))
        rows = np.flatnonzero(o.passed)
        if len(rows):
            p_right[rows] = predict(
                check.model, [held[i].signals for i in rows], [held[i].text for i in rows], [held[i].answer for i in rows]
            )
    p_fail = None
    if router is not None:
        p_fail = predict(router.model, [{k: s.signals[k] for k in ROUTER_SIGNALS if k in s.signals} for s in held], [s.text for s in held])
    setting = evaluate(o, p_right, p_fail, check.escalate_below if check else None, router.skip_above if router else None)
    out: dict[str, Any] = {"cases": len(held), **(_setting_figures(setting) or {})}
    if p_right is not None and o.passed.any():
        out["check_ece"] = expected_calibration_error(p_right[o.passed], o.cheap_correct[o.passed])
    if p_fail is not None:
        out["router_ece"] = expected_calibration_error(p_fail, 1 - o.cheap_correct)
    return out


def _portable(dataset: str) -> str:
    """The dataset as a path under the datasets folder when it lies there, else its file name
    (a split suffix such as ``#val`` is kept)."""
    path, _, split = dataset.partition("#")
    try:
        root = datasets_dir()
        shown = Path(path).resolve().relative_to(root.resolve()).as_posix()
    except (ConfigError, ValueError, OSError):
        shown = Path(path).name
    return f"{shown}#{split}" if split else shown


def calibrate_run(run_dir: str | Path, options: CalibrateOptions) -> CalibrationRun:
    """Calibrate every step of an eval run folder (see the module docstring)."""
    tables = load_tables(run_dir, options.reference, options.cheap_policy)
    results = [_calibrate_step(table, options) for _, table in sorted(tables.steps.items())]
    steps = {r.step: r.calibration for r in results if r.calibration is not None}
    body = json.dumps({k: v.model_dump(mode="json") for k, v in steps.items()}, sort_keys=True)
    artifact = CalibrationArtifact(
        format=ARTIFACT_FORMAT,
        version=hashlib.sha256(body.encode()).hexdigest()[:12],
        graph=tables.manifest.graph,
        created_at=utc_now(),
        # Names, not machine paths: the artifact travels with a repository.
        source={
            "run": Path(run_dir).resolve().name,
            "suite": tables.manifest.suite,
            "dataset": _portable(tables.manifest.dataset),
            "cheap_policy": tables.cheap_policy,
            "holdout": options.holdout,
            "seed": options.fit.seed,
        },
        target=options.target,
        reference=options.reference,
        steps=steps,
    )
    return CalibrationRun(artifact=artifact, steps=results, left_out={t.step: t.left_out for t in tables.steps.values() if t.left_out})
