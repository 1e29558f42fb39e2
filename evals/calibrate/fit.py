"""Fitting: calibrated probabilities, and the cheapest escalation setting that meets a target.

For one step, two models may be fitted on an eval run's table (evals/calibrate/table.py):

* the **check**: P(the cheap answer is right | it passed the other checks), from its
  signals and input text;
* the **router**: P(the cheap tier's answer is wrong | input), from the input alone.

Each is scikit-learn's logistic regression (its C chosen by stratified cross-validation)
whose score is then calibrated (isotonic with enough data, else Platt). Every figure used to
choose a threshold is out of fold: each case's probability comes from models that never saw
it, calibrator included, so the curve, the chosen point and the reliability diagram are
estimates for new data, not fits to this data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tierflow.agents.calibration import Calibrator, DenseEmbedding, Ensemble, ProbabilityModel, TextFeatures, embedded_text, hashed_text
from tierflow.agents.signals import SIZE_SIGNALS
from tierflow.tools.embeddings import DEFAULT_CONFIG, DEFAULT_DIM

if TYPE_CHECKING:
    # Imported where used (scikit-learn and scipy load slowly); untyped, so Any to mypy.
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

__all__ = ["FitSettings", "Fitted", "fit_probability", "predict", "expected_calibration_error", "reliability_bins"]

_C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)


@dataclass(frozen=True)
class FitSettings:
    folds: int = 5
    text_features: int = 2048
    text_weight: float = 1.0
    seed: int = 0
    # Isotonic calibration needs this many of each class; below it, Platt scaling.
    isotonic_min_class: int = 60
    # Add the input's wordllama sentence embedding to its hashed words.
    embedding: bool = True


@dataclass(frozen=True)
class Fitted:
    model: Ensemble  # one member per fold (agents.calibration.Ensemble says why)
    oof: np.ndarray  # each row's probability from the member that did not see it
    c: float


def _standardiser(signals: Sequence[Mapping[str, float]], names: Sequence[str]) -> tuple[list[str], list[float], list[float]]:
    kept, means, scales = [], [], []
    for name in names:
        values = [s[name] for s in signals if name in s and math.isfinite(s[name])]
        if len(values) < 2:
            continue
        column = np.array([math.log1p(max(0.0, v)) if name in SIZE_SIGNALS else v for v in values])
        scale = float(column.std())
        if scale < 1e-9:
            continue  # a constant says nothing
        kept.append(name)
        means.append(float(column.mean()))
        scales.append(scale)
    return kept, means, scales


def _design(
    model: ProbabilityModel, signals: Sequence[Mapping[str, float]], texts: Sequence[str], answers: Sequence[str] | None
) -> csr_matrix:
    from scipy import sparse

    blocks = [sparse.csr_matrix(np.array([model.numeric_row(s) for s in signals], dtype=float).reshape(len(signals), len(model.signals)))]
    if model.text is not None:
        blocks.append(hashed_text(list(texts), model.text))
    if model.answer is not None:
        blocks.append(hashed_text(list(answers or [""] * len(signals)), model.answer))
    if model.embedding is not None:
        blocks.append(sparse.csr_matrix(embedded_text(list(texts), model.embedding)))
    return sparse.hstack(blocks, format="csr")


def _shell(
    names: Sequence[str], signals: Sequence[Mapping[str, float]], settings: FitSettings, use_text: bool, use_answer: bool
) -> ProbabilityModel:
    kept, means, scales = _standardiser(signals, names)
    text = TextFeatures(n_features=settings.text_features, weight=settings.text_weight) if use_text else None
    answer = TextFeatures(n_features=settings.text_features, weight=settings.text_weight) if use_answer else None
    embedding = DenseEmbedding(config=DEFAULT_CONFIG, dim=DEFAULT_DIM) if use_text and settings.embedding else None
    shell = ProbabilityModel(
        signals=kept, means=means, scales=scales, coef=[0.0] * len(kept), intercept=0.0,
        calibrator=Calibrator(method="sigmoid", a=-1.0, b=0.0),
    )
    width = len(kept) + sum(t.n_features for t in (text, answer) if t) + (embedding.dim if embedding else 0)
    return shell.model_copy(update={"text": text, "answer": answer, "embedding": embedding, "coef": [0.0] * width})


def _logistic(c: float, seed: int) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000, random_state=seed)


def _folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    k = max(2, min(folds, int(min(np.sum(y), np.sum(1 - y)))))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def _choose_c(x: csr_matrix, y: np.ndarray, settings: FitSettings) -> float:
    best, best_loss = _C_GRID[0], math.inf
    for c in _C_GRID:
        loss = 0.0
        for train, test in _folds(y, 3, settings.seed):
            lr = _logistic(c, settings.seed).fit(x[train], y[train])
            p = np.clip(lr.predict_proba(x[test])[:, 1], 1e-6, 1 - 1e-6)
            loss -= float(np.sum(y[test] * np.log(p) + (1 - y[test]) * np.log(1 - p)))
        if loss < best_loss:
            best, best_loss = c, loss
    return best


def _calibrator(scores: np.ndarray, y: np.ndarray, settings: FitSettings) -> Calibrator:
    if min(np.sum(y), np.sum(1 - y)) >= settings.isotonic_min_class:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, y)
        return Calibrator(method="isotonic", x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_])
    platt = _logistic(1e6, settings.seed).fit(scores.reshape(-1, 1), y)
    return Calibrator(method="sigmoid", a=-float(platt.coef_[0][0]), b=-float(platt.intercept_[0]))


def _fit_once(shell: ProbabilityModel, x: csr_matrix, y: np.ndarray, c: float, settings: FitSettings) -> ProbabilityModel:
    """Logistic regression on all rows; its calibrator on out-of-fold scores of the same rows."""
    lr = _logistic(c, settings.seed).fit(x, y)
    scores = np.zeros(len(y))
    for train, test in _folds(y, settings.folds, settings.seed):
        scores[test] = _logistic(c, settings.seed).fit(x[train], y[train]).decision_function(x[test])
    return shell.model_copy(
        update={
            # Six significant digits: the artifact stays small, the probabilities move < 1e-5.
            "coef": [float(f"{v:.6g}") for v in lr.coef_[0]],
            "intercept": float(lr.intercept_[0]),
            "calibrator": _calibrator(scores, y, settings),
        }
    )


def _predict(model: ProbabilityModel, x: csr_matrix) -> np.ndarray:
    raw = np.asarray(x @ np.array(model.coef)).ravel() + model.intercept
    probabilities: np.ndarray = np.clip(np.array([model.calibrator(float(s)) for s in raw]), 0.0, 1.0)
    return probabilities


def fit_probability(
    signals: Sequence[Mapping[str, float]],
    texts: Sequence[str],
    y: Sequence[bool],
    settings: FitSettings,
    *,
    names: Sequence[str] | None = None,
    use_text: bool = True,
    answers: Sequence[str] | None = None,
) -> Fitted:
    """A calibrated P(y) from `signals` (those in `names`, default all seen), the input
    `texts` and, when given, the `answers`' words; with out-of-fold probabilities for every row."""
    labels = np.array([1.0 if v else 0.0 for v in y])
    all_names = sorted({k for s in signals for k in s}) if names is None else list(names)
    use_answer = answers is not None
    shell = _shell(all_names, signals, settings, use_text, use_answer)
    c = _choose_c(_design(shell, signals, texts, answers), labels, settings)
    oof = np.zeros(len(labels))
    members: list[ProbabilityModel] = []

    def rows(index: np.ndarray) -> tuple[list[Mapping[str, float]], list[str], list[str] | None]:
        return [signals[i] for i in index], [texts[i] for i in index], None if answers is None else [answers[i] for i in index]

    for train, test in _folds(labels, settings.folds, settings.seed + 1):
        # The fold's own standardiser and calibrator: nothing of the held-out rows leaks in.
        fold_signals, fold_texts, fold_answers = rows(train)
        fold_shell = _shell(all_names, fold_signals, settings, use_text, use_answer)
        fold_model = _fit_once(fold_shell, _design(fold_shell, fold_signals, fold_texts, fold_answers), labels[train], c, settings)
        oof[test] = _predict(fold_model, _design(fold_model, *rows(test)))
        members.append(fold_model)
    return Fitted(model=Ensemble(members=members), oof=oof, c=c)


def predict(
    model: Ensemble, signals: Sequence[Mapping[str, float]], texts: Sequence[str], answers: Sequence[str] | None = None
) -> np.ndarray:
    """Vectorised `Ensemble.probability` over many rows (the same numbers)."""
    mean: np.ndarray = np.mean([_predict(m, _design(m, signals, texts, answers)) for m in model.members], axis=0)
    return mean


def reliability_bins(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per equal-width bin that has rows."""
    out = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append((float(p[mask].mean()), float(y[mask].mean()), int(mask.sum())))
    return out


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width bins of |observed - predicted|, weighted by the bin's share."""
    if len(p) == 0:
        return math.nan
    return float(sum(n * abs(rate - mean) for mean, rate, n in reliability_bins(p, y, bins)) / len(p))
