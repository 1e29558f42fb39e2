"""Calibrated escalation at run time: the artifact `tierflow calibrate` writes, read back.

A tiers file names it (``[escalation] calibration = "calibration/math_qa.json"``). Per
step it may hold:

* a **calibrated check** on one tier's answers: the probability that the answer is right,
  from the verifier's signals (`agents.signals`) and the step's input text; below
  ``escalate_below`` the answer goes up the ladder, as a soft check's objection does;
* a **router**: the probability that the tier fails, from the input alone, before any call;
  above ``skip_above`` the step starts on the next tier up.

Each model is a logistic regression over standardised signals plus hashed word n-grams of
the input, followed by isotonic or Platt calibration of its score: a few hundred numbers in
JSON, so serving one needs no pickle and no fitted vocabulary.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tierflow.agents.signals import SIZE_SIGNALS
from tierflow.model_tiers import ConfigError

__all__ = [
    "ARTIFACT_FORMAT",
    "TextFeatures",
    "DenseEmbedding",
    "Calibrator",
    "ProbabilityModel",
    "Ensemble",
    "CalibratedCheck",
    "Router",
    "StepCalibration",
    "CalibrationArtifact",
    "load_calibration",
    "hashed_text",
    "embedded_text",
    "answer_text",
]

ARTIFACT_FORMAT: Final = "tierflow.calibration/1"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextFeatures(_Frozen):
    """How the input text is embedded: hashed word 1..`ngram_max`-grams, L2-normalised."""

    n_features: int = Field(ge=1)
    ngram_max: int = Field(default=2, ge=1, le=3)
    weight: float = 1.0


class DenseEmbedding(_Frozen):
    """The input's wordllama sentence embedding (tools/embeddings.py: offline, unit norm)."""

    config: str
    dim: int = Field(ge=1)
    weight: float = 1.0


def embedded_text(texts: list[str], spec: DenseEmbedding) -> Any:
    """The texts' dense embeddings (a numpy array, one row per text), times `spec.weight`."""
    from tierflow.tools.embeddings import embed

    return embed(texts, config=spec.config, dim=spec.dim) * spec.weight


@lru_cache(maxsize=8)
def _vectorizer(n_features: int, ngram_max: int) -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=n_features, ngram_range=(1, ngram_max), alternate_sign=False, norm="l2")


def answer_text(value: Any) -> str:
    """The words of an answer: its string (and number) values, depth first, keys left out."""
    if isinstance(value, Mapping):
        return " ".join(answer_text(v) for v in value.values())
    if isinstance(value, list | tuple):
        return " ".join(answer_text(v) for v in value)
    return "" if value is None else str(value)


def hashed_text(texts: list[str], spec: TextFeatures) -> Any:
    """The texts' hashed features (a sparse matrix, one row per text), times `spec.weight`."""
    return _vectorizer(spec.n_features, spec.ngram_max).transform(texts) * spec.weight


class Calibrator(_Frozen):
    """Maps a logistic score to a probability: isotonic (a monotone step curve, linearly
    interpolated and clipped, as scikit-learn's IsotonicRegression predicts) or Platt."""

    method: Literal["isotonic", "sigmoid"]
    x: list[float] = Field(default_factory=list)
    y: list[float] = Field(default_factory=list)
    a: float = 0.0
    b: float = 0.0

    @model_validator(mode="after")
    def _shape(self) -> Calibrator:
        if self.method == "isotonic" and (not self.x or len(self.x) != len(self.y)):
            raise ValueError("an isotonic calibrator needs x and y of the same, non-zero length")
        return self

    def __call__(self, score: float) -> float:
        if self.method == "sigmoid":
            return 1.0 / (1.0 + math.exp(max(-60.0, min(60.0, self.a * score + self.b))))
        import numpy

        return float(numpy.interp(score, self.x, self.y))


class ProbabilityModel(_Frozen):
    """A calibrated probability of one event from signals and input text."""

    signals: list[str]
    means: list[float]
    scales: list[float]
    coef: list[float]  # one per signal, then per hashed input feature, then per hashed answer feature
    intercept: float
    text: TextFeatures | None = None
    # The answer's own words (`answer_text`): a post-call check may read them, a router not.
    answer: TextFeatures | None = None
    # The input's sentence embedding: its meaning, where the hashed words see only its words.
    embedding: DenseEmbedding | None = None
    calibrator: Calibrator

    @property
    def width(self) -> int:
        blocks = (self.text.n_features if self.text else 0) + (self.answer.n_features if self.answer else 0)
        return len(self.signals) + blocks + (self.embedding.dim if self.embedding else 0)

    @model_validator(mode="after")
    def _shape(self) -> ProbabilityModel:
        width = self.width
        if not (len(self.means) == len(self.scales) == len(self.signals)) or len(self.coef) != width:
            raise ValueError(f"coef has {len(self.coef)} entries, the features are {width}")
        return self

    def numeric_row(self, signals: Mapping[str, float]) -> list[float]:
        """Standardised signals; a missing one sits at the training mean (0)."""
        row = []
        for name, mean, scale in zip(self.signals, self.means, self.scales, strict=True):
            raw = signals.get(name)
            if raw is None or not math.isfinite(raw):
                row.append(0.0)
                continue
            value = math.log1p(max(0.0, raw)) if name in SIZE_SIGNALS else raw
            row.append((value - mean) / scale)
        return row

    def score(self, signals: Mapping[str, float], text: str, answer: str = "") -> float:
        numeric = self.numeric_row(signals)
        total = self.intercept + sum(c * v for c, v in zip(self.coef, numeric, strict=False))
        offset = len(self.signals)
        for spec, words in ((self.text, text), (self.answer, answer)):
            if spec is None:
                continue
            hashed = hashed_text([words], spec)
            total += sum(self.coef[offset + int(j)] * float(v) for j, v in zip(hashed.indices, hashed.data, strict=True))
            offset += spec.n_features
        if self.embedding is not None:
            vector = embedded_text([text], self.embedding)[0]
            total += sum(c * float(v) for c, v in zip(self.coef[offset : offset + self.embedding.dim], vector, strict=True))
        return total

    def probability(self, signals: Mapping[str, float], text: str, answer: str = "") -> float:
        return min(1.0, max(0.0, self.calibrator(self.score(signals, text, answer))))


class Ensemble(_Frozen):
    """The mean probability of models fitted on different folds of the same cases.

    What is served is what was measured: each case's out-of-fold probability, on which the
    threshold was chosen, came from one of these members, each fitted (calibrator included)
    without that case. A single refit on every case would score new inputs on another
    scale than the one its threshold was chosen on."""

    members: list[ProbabilityModel] = Field(min_length=1)

    def probability(self, signals: Mapping[str, float], text: str, answer: str = "") -> float:
        return sum(m.probability(signals, text, answer) for m in self.members) / len(self.members)


class CalibratedCheck(_Frozen):
    """P(the answer of `tier` is right); escalate below `escalate_below`."""

    tier: str
    escalate_below: float = Field(ge=0, le=1)
    model: Ensemble


class Router(_Frozen):
    """P(`tier` fails | input); start the step one tier up above `skip_above`."""

    tier: str
    skip_above: float = Field(ge=0, le=1)
    model: Ensemble


class StepCalibration(_Frozen):
    check: CalibratedCheck | None = None
    router: Router | None = None
    # What the fit estimated (cost saved, quality, intervals): for people, not for serving.
    estimate: dict[str, Any] = Field(default_factory=dict)


class CalibrationArtifact(_Frozen):
    format: Literal["tierflow.calibration/1"] = ARTIFACT_FORMAT
    version: str
    graph: str
    created_at: str
    source: dict[str, Any] = Field(default_factory=dict)
    target: float
    reference: str
    steps: dict[str, StepCalibration]

    def for_step(self, step: str) -> StepCalibration | None:
        return self.steps.get(step)


_LOCK = threading.Lock()
_LOADED: dict[tuple[str, int, int], CalibrationArtifact] = {}


def load_calibration(path: str | Path) -> CalibrationArtifact:
    """The artifact at `path`, read once per file version; a ConfigError says what is wrong."""
    file = Path(path)
    try:
        stat = file.stat()
    except OSError:
        raise ConfigError(f"calibration artifact not found: {file}; run `tierflow calibrate RUN_DIR` to write one") from None
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
    try:
        artifact = CalibrationArtifact.model_validate_json(file.read_bytes())
    except (OSError, ValidationError, ValueError) as err:
        first = err.errors()[0] if isinstance(err, ValidationError) else None
        where = f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}" if first else str(err)
        raise ConfigError(
            f"not a tierflow calibration artifact ({ARTIFACT_FORMAT}): {where}; write it again with `tierflow calibrate`",
            source=str(file),
        ) from None
    with _LOCK:
        _LOADED[key] = artifact
    return artifact
