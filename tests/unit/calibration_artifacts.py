"""Calibration artifacts built by hand for the calibration tests: a model that always says
the same probability, and an artifact for math_qa's steps."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tierflow.agents.calibration import CalibrationArtifact, Calibrator, Ensemble, ProbabilityModel, StepCalibration

__all__ = ["constant_model", "math_qa_artifact"]


def constant_model(p: float) -> Ensemble:
    """A model that says `p` whatever it is shown: a test pins the decision, not the fit."""
    logit = math.log(p / (1 - p))
    member = ProbabilityModel(
        signals=[], means=[], scales=[], coef=[], intercept=logit, calibrator=Calibrator(method="sigmoid", a=-1.0, b=0.0)
    )
    return Ensemble(members=[member])


def math_qa_artifact(steps: Mapping[str, StepCalibration]) -> CalibrationArtifact:
    """An artifact for math_qa with these steps' check and router (target 95% of all-frontier)."""
    return CalibrationArtifact(version="t", graph="math_qa", created_at="now", target=0.95, reference="all-frontier", steps=dict(steps))
