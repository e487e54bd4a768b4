"""The predictive model of P(close), scikit-learn style: `LeadModel` (fit / predict_proba /
explain) and the matrix it sees (`model_matrix`).

The model is a base classifier (L2 logistic regression on the decayed signals, or gradient
boosting on counts and ages) and a calibrator fitted on the base model's out-of-fold scores.
The train stage (pipeline.stages.model) fits one per rolling-origin fold and publishes the
last; `leadcal score` rebuilds the same matrix from a new export and asks the published model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit, cross_val_predict

from pipeline.core.calibration import apply_calibrator, choose_method, fit_calibrator, lead_folds
from pipeline.core.explain import INTERACTION_MARK, effects, signal_columns
from pipeline.core.logistic import fit_newton, fit_newton_many, fold_hessians
from pipeline.core.scorecard import SOLVER, SOLVER_TOLERANCE
from pipeline.core.signals import SignalSet, decay_matrix, lead_support
from pipeline.params import HGBParams
from pipeline.schema import AGE_PREFIX, COUNT_PREFIX, NEVER_DAYS, snapshot_stratum


def snapshot_column(days: int) -> str:
    return f"snapshot = {days} days"


def model_matrix(features: pd.DataFrame, signals: SignalSet, kind: str, half_life_days: float | None,
                 snapshot_days: list[int]) -> pd.DataFrame:
    """What the model sees; everything is known at the row's moment.

    logistic: the signals, activities decayed with the points table's half-life (the
    form the evidence supports: on the sample its AUC is within 0.02 of the truth's);
    hgb: the 0/1 signals plus activity counts, ages and the creation month, from which
    trees can learn their own recency and seasonality. Both also see the row's snapshot
    (one indicator per snapshot after the first): a lead still open at day 30 closes less
    often than a new one, and the CRM knows a lead's age when it scores it.
    """
    stratum = snapshot_stratum(features["snapshot_days"].to_numpy(), snapshot_days)
    snapshots = pd.DataFrame({snapshot_column(a): (stratum == a).astype(float) for a in snapshot_days[1:]},
                             index=features.index)
    if kind == "logistic":
        # as it is: 0/1 signals stay uint8 (a float copy of every row cost the train stage 5 s at a
        # million leads); the model reads float copies of the rows it needs (pipeline.stages.model.take)
        decayed = decay_matrix(signals, features, half_life_days).matrix
        return pd.concat([decayed, snapshots, _engagement_by_snapshot(decayed, signals, stratum, snapshot_days)], axis=1)
    activities = [c[len(COUNT_PREFIX):] for c in features.columns if c.startswith(COUNT_PREFIX)]
    counts = features[[COUNT_PREFIX + a for a in activities]].astype(float)
    # "Never done" is an age far beyond any window, not a missing value: an activity never
    # seen in the training months would otherwise be an all-missing column trees cannot bin.
    ages = features[[AGE_PREFIX + a for a in activities]].astype(float).fillna(NEVER_DAYS)
    month = features["created_at"].dt.month.rename("created_month").astype(float)
    return pd.concat([signals.matrix.astype(float), counts, ages, month, snapshots], axis=1)


def interaction_column(signal: str, days: int) -> str:
    return f"{signal} {INTERACTION_MARK} {days}"


def _engagement_by_snapshot(decayed: pd.DataFrame, signals: SignalSet, stratum: np.ndarray,
                            snapshot_days: list[int]) -> pd.DataFrame:
    """Each engagement signal again, once per snapshot before the last, zero on the other rows.

    How much an activity says about closing depends on when the lead is seen: at day 30 the
    decision is near, at day 7 weeks of activity are still to come. The logistic model gets
    an effect per engagement signal (the last snapshot's) and, through these columns, how it
    differs at each earlier snapshot; the L2 penalty keeps the differences at 0 unless the
    data show them. The points table, one number per signal for the CRM, has no such columns.
    """
    engagement = list(signals.catalog.loc[signals.catalog["kind"] == "engagement", "signal"])
    values = decayed[engagement].to_numpy()
    columns = {interaction_column(name, days): values[:, j] * (stratum == days)
               for days in snapshot_days[:-1] if days > 0  # a day-0 row has no activity to weigh
               for j, name in enumerate(engagement)}
    return pd.DataFrame(columns, index=decayed.index)


def supported_columns(X: pd.DataFrame, signals: SignalSet, rows: np.ndarray, min_support: int) -> list[str]:
    """The columns of X a fit may use: signals seen in fewer than `min_support` of the training leads
    are left out (with an activity's counts and ages), as in the points table. A fit value that
    rare is then scored like its attribute's reference, and never becomes a coefficient or a reason."""
    rare = set(signals.catalog["signal"][lead_support(signals.take(rows)) < min_support])
    dropped = {column for name in rare for column in signal_columns(X.columns, name)}
    return [c for c in X.columns if c not in dropped]


def logistic_estimator(estimator: LogisticRegression, X: pd.DataFrame, values: np.ndarray,
                       y: np.ndarray, start: LogisticRegression | None = None) -> LogisticRegression:
    """`estimator` (unfitted, L2, with an intercept) fitted to X (`values`: X as a C-ordered float
    array) and y by pipeline.core.logistic's solver, with the attributes scikit-learn's `fit` sets.
    `start`: a fit of nearly the same rows (the previous fold's), where the solver starts, matched by
    column name (0 for a column it lacks): the same optimum in fewer Newton steps.

    The same objective and optimum as scikit-learn's newton-cholesky, to its tolerance
    (tests/test_logistic.py), reached without its copies of X (validation, then one per Newton
    step for the weighted Hessian): a third of the train stage's base fits at a million rows. The
    result is a plain LogisticRegression, so model.skops loads and predicts as before.
    """
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(f"a logistic lead model needs both outcomes in its rows, got classes {classes}")
    theta = None
    if start is not None:
        known = dict(zip(getattr(start, "feature_names_in_", ()), start.coef_[0]))
        theta = np.array([known.get(name, 0.0) for name in X.columns] + [start.intercept_[0]])
    fit = fit_newton(values, (y == classes[1]).astype(float), estimator.C, start=theta, max_iter=estimator.max_iter)
    if all(isinstance(name, str) for name in X.columns):  # as scikit-learn records a DataFrame's names
        estimator.feature_names_in_ = np.asarray(X.columns, dtype=object)
    estimator.n_features_in_ = values.shape[1]
    estimator.classes_ = classes
    estimator.n_iter_ = np.array([fit.iterations], dtype=np.int32)
    estimator.coef_ = fit.coefficients.reshape(1, -1).copy()
    estimator.intercept_ = np.array([fit.intercept])
    return estimator


class LeadModel:
    """P(close) of a lead at a moment: a base classifier and its calibrator.

    `fit` trains the base model on every training row and the calibrator on its cross-fitted
    (out-of-fold) scores: each training lead's calibration score comes from a model fitted
    without it (folds that keep a lead's rows together), so the calibrator sees honest scores
    while the published base model keeps all the training data (scikit-learn's
    CalibratedClassifierCV with ensemble=False does the same). With fewer customer leads than
    two per fold the model stays uncalibrated and says so in `method_`.
    """

    def __init__(self, kind: str = "logistic", logistic_c: float = 1.0, hgb: HGBParams | None = None,
                 seed: int = 0, calibration_folds: int = 5) -> None:
        self.kind = kind
        self.logistic_c = logistic_c
        self.hgb = hgb or HGBParams()
        self.seed = seed
        self.calibration_folds = calibration_folds

    def estimator(self) -> HistGradientBoostingClassifier | LogisticRegression:
        """A fresh, unfitted base classifier with this model's settings."""
        if self.kind == "logistic":
            return LogisticRegression(C=self.logistic_c, l1_ratio=0, solver=SOLVER, max_iter=200,
                                      tol=SOLVER_TOLERANCE, random_state=self.seed)
        h = self.hgb
        return HistGradientBoostingClassifier(
            learning_rate=h.learning_rate, max_iter=h.max_iter, max_depth=h.max_depth,
            min_samples_leaf=h.min_samples_leaf, l2_regularization=h.l2_regularization,
            early_stopping=False, random_state=self.seed,
        )

    def fit(self, X: pd.DataFrame, y: np.ndarray, lead: np.ndarray, start: LeadModel | None = None) -> LeadModel:
        """Fit on the rows of X (outcomes `y`, each row's lead code `lead`). `start`: a model fitted on
        nearly the same rows (the previous validation fold's), where a logistic fit starts: the same
        optimum in fewer Newton steps (gradient boosting starts afresh)."""
        folds = self.calibration_folds
        values = None
        if self.kind == "logistic":
            values = np.ascontiguousarray(X.to_numpy(dtype=float))  # once: the base fit and the cross-fitting
            warm = start.base_ if start is not None and isinstance(start.base_, LogisticRegression) else None
            self.base_ = logistic_estimator(self.estimator(), X, values, y, warm)
        else:
            self.base_ = self.estimator().fit(X, y)
        self.calibrator_, self.method_, self.losses_ = None, "none (too few customers to calibrate)", {}
        if len(np.unique(lead[y == 1])) < folds * 2:  # customer leads, not rows: the folds split leads
            return self
        cv = lead_folds(y, lead, folds, self.seed)
        if self.kind == "logistic":
            raw = self._cross_fitted_logistic(X, y, cv, values)
        else:
            raw = cross_val_predict(self.estimator(), X, y, cv=cv, method="predict_proba")[:, 1]
        self.method_, self.losses_ = choose_method(raw, y, self.seed, groups=lead)
        self.calibrator_ = fit_calibrator(raw, y, self.method_)
        return self

    def _cross_fitted_logistic(self, X: pd.DataFrame, y: np.ndarray, cv: PredefinedSplit,
                               values: np.ndarray | None = None) -> np.ndarray:
        """Each row's P(close) from the logistic model fitted without its fold: what
        cross_val_predict gives. A fold's fit is the fit of every row with weight 0 on the fold's
        own: the folds' fits are k weightings of the same rows, all started at the base model's
        optimum, where Newton's method needs gradients, not Hessians, and fit_newton_many takes
        every fit's gradient in one pass over the rows (no copy of four fifths of them per fold;
        pipeline.core.logistic: the same optimum as scikit-learn's, to its tolerance). `values`: X
        as a C-ordered float array, if the caller has it."""
        values = np.ascontiguousarray(X.to_numpy(dtype=float)) if values is None else values
        splits = list(cv.split())
        weights = np.ones((len(y), len(splits)))
        fold = np.full(len(y), len(splits))  # a row no fold leaves out (none with lead_folds)
        for index, (_, test) in enumerate(splits):
            weights[test, index], fold[test] = 0.0, index
        start = np.append(self.base_.coef_[0], self.base_.intercept_[0])
        usable = np.ones((len(splits), values.shape[1]), dtype=bool)
        # each fit's exact Hessian at the start, all of them for the price of one (the rows' parts): a
        # fold leaves out a fifth of the rows, too much for the shared Hessian rescaled, which made
        # every fit build its own (15 Hessians of the train stage at a million leads)
        fitted = expit(values @ start[:-1] + start[-1])
        start_hessians = fold_hessians(values, fitted * (1 - fitted), fold, len(splits), self.logistic_c)
        thetas = fit_newton_many(values, (y == self.base_.classes_[1]).astype(float), weights, self.logistic_c,
                                 usable, start, start_hessians=start_hessians)
        raw = np.zeros(len(y))
        for fold, (_, test) in enumerate(splits):
            raw[test] = expit(values[test] @ thetas[:-1, fold] + thetas[-1, fold])
        return raw

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, object], method: str | None = None) -> LeadModel:
        """The model a saved bundle holds ({"base", "calibrator"}, as model.skops stores it);
        `method`: its calibration method, from model.json."""
        model = cls("hgb" if isinstance(bundle["base"], HistGradientBoostingClassifier) else "logistic")
        model.base_, model.calibrator_ = bundle["base"], bundle["calibrator"]
        model.method_, model.losses_ = method, {}
        return model

    def bundle(self) -> dict[str, object]:
        """What model.skops holds: the fitted base classifier and calibrator."""
        return {"base": self.base_, "calibrator": self.calibrator_}

    def probability(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated P(close) of each row."""
        raw = self.base_.predict_proba(X)[:, 1]
        return raw if self.calibrator_ is None else apply_calibrator(self.calibrator_, raw)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(P(not close), P(close)) per row, calibrated, as scikit-learn classifiers return them."""
        p = self.probability(X)
        return np.column_stack([1.0 - p, p])

    def explain(self, X: pd.DataFrame, catalog: pd.DataFrame, reference: Mapping[str, str]) -> pd.DataFrame:
        """Each row's effect of each signal on the base model's log-odds, against the reference
        lead (pipeline.core.explain.effects): the reasons shown beside a score."""
        return effects(lambda frame: self.base_.predict_proba(frame)[:, 1], X, catalog, reference)
