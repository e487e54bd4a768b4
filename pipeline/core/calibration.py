"""Making "20 %" mean 20 %: calibrating a model's probabilities on leads it was not fitted on.

Two standard calibrators, both monotone (they never change the ranking):
- sigmoid (Platt scaling): a logistic regression on the log-odds of the raw score; smooth,
  needs little data, can only stretch and shift;
- isotonic: the best non-decreasing step function; flexible, needs more customers.
Which one is used is decided by 5-fold cross-validated log loss on the calibration scores,
so the choice is itself made on data the calibrator was not fitted on. The scores are
out-of-fold (pipeline.core.lead_model.LeadModel.fit): no lead is calibrated on its own fitted score.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import PredefinedSplit

METHODS = ("sigmoid", "isotonic")
EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p)).reshape(-1, 1)


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str) -> LogisticRegression | IsotonicRegression:
    if method == "sigmoid":
        return LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000).fit(_logit(raw), y)
    if method == "isotonic":
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(np.asarray(raw, dtype=float), y)
    raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")


def apply_calibrator(calibrator: LogisticRegression | IsotonicRegression, raw: np.ndarray) -> np.ndarray:
    if isinstance(calibrator, IsotonicRegression):
        return np.clip(calibrator.predict(np.asarray(raw, dtype=float)), EPS, 1 - EPS)
    return calibrator.predict_proba(_logit(raw))[:, 1]


def lead_folds(y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> PredefinedSplit:
    """Cross-validation folds that keep each lead's rows together and share out customers evenly.

    Every row of a lead has the lead's label, so dealing the shuffled customers, then the
    shuffled other leads, round the folds stratifies exactly by lead; scikit-learn's
    StratifiedGroupKFold does the same with a Python loop per group, too slow for 200,000 leads.
    """
    y = np.asarray(y, dtype=int)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    leads, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(leads), dtype=np.int64)
    for label in (1, 0):
        members = np.flatnonzero(y[first] == label)
        fold[rng.permutation(members)] = np.arange(len(members)) % folds
    return PredefinedSplit(fold[inverse.ravel()])


def choose_method(raw: np.ndarray, y: np.ndarray, seed: int, folds: int = 5,
                  groups: np.ndarray | None = None) -> tuple[str, dict[str, float]]:
    """The method with the lower cross-validated log loss, and both losses.

    `groups` (each row's lead) keeps a lead's rows in one fold. With fewer customers than
    folds x 4, isotonic cannot be judged and sigmoid is used.
    """
    y = np.asarray(y, dtype=int)
    leads = np.arange(len(y)) if groups is None else np.asarray(groups)
    customers, others = len(np.unique(leads[y == 1])), len(np.unique(leads[y == 0]))  # leads: the folds split leads
    if customers < folds * 4 or others < folds * 4:
        return "sigmoid", {}
    losses = {}
    splitter = lead_folds(y, groups, folds, seed)
    for method in METHODS:
        predicted = np.zeros(len(y))
        for fit_rows, test_rows in splitter.split():
            calibrator = fit_calibrator(raw[fit_rows], y[fit_rows], method)
            predicted[test_rows] = apply_calibrator(calibrator, raw[test_rows])
        losses[method] = float(log_loss(y, np.clip(predicted, EPS, 1 - EPS), labels=[0, 1]))
    return min(losses, key=losses.get), losses
