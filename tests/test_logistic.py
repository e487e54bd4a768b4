"""The Newton solver (pipeline.core.logistic) reaches scikit-learn's optimum, from any start."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from pipeline.core.logistic import fit_newton, fit_newton_many, fold_hessians, hessian


def problem(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.random(n) < 0.3, rng.random(n) < 0.05, rng.random(n), rng.random(n) < 0.01])
    log_odds = -2.0 + 1.2 * X[:, 0] + 0.8 * X[:, 1] - 0.5 * X[:, 2] + 1.5 * X[:, 3]
    return X.astype(float), (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(int)


def exact(X: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    model = LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12, max_iter=500)
    model.fit(X, y, sample_weight=weight)
    return np.append(model.coef_[0], model.intercept_[0])


def test_newton_reaches_scikit_learns_optimum_with_and_without_weights() -> None:
    X, y = problem()
    fit = fit_newton(X, y, 0.5)
    assert np.append(fit.coefficients, fit.intercept) == pytest.approx(exact(X, y), abs=1e-7)
    weight = np.random.default_rng(1).poisson(1.0, len(y)).astype(float)
    fit = fit_newton(X, y, 0.5, weight)
    assert np.append(fit.coefficients, fit.intercept) == pytest.approx(exact(X, y, weight), abs=1e-7)


def test_a_warm_start_with_another_fits_hessian_reaches_the_same_optimum() -> None:
    X, y = problem()
    other = fit_newton(X[:1000], y[:1000], 0.5)  # a different fit: its optimum and Hessian are only near
    warm = fit_newton(X, y, 0.5, start=np.append(other.coefficients, other.intercept), start_hessian=other.hessian)
    cold = fit_newton(X, y, 0.5)
    assert np.append(warm.coefficients, warm.intercept) == pytest.approx(
        np.append(cold.coefficients, cold.intercept), abs=1e-9)
    assert warm.hessians <= cold.hessians


def test_many_weighted_fits_at_once_equal_each_fit_alone() -> None:
    X, y = problem()
    rng = np.random.default_rng(2)
    weights = rng.poisson(1.0, (len(y), 4)).astype(float)
    usable = np.ones((4, X.shape[1]), dtype=bool)
    usable[1, 3] = False  # a fit without the rare column: its coefficient stays 0
    full = fit_newton(X, y, 0.5)
    thetas = fit_newton_many(X, y, weights, 0.5, usable, np.append(full.coefficients, full.intercept))
    for j in range(4):
        columns = usable[j]
        alone = exact(X[:, columns], y, weights[:, j])
        assert thetas[np.append(columns, True), j] == pytest.approx(alone, abs=1e-7)
        assert (thetas[:-1, j][~columns] == 0).all()


def test_a_fit_the_shared_hessian_misleads_gets_its_own_and_stays_in_the_batch(monkeypatch) -> None:
    """A weighting far from the rows' own (the 5 % column's rows nearly dropped): its second step
    under the shared Hessian grows. It gets its own Hessian there, the step not taken, and reaches
    scikit-learn's optimum in the batch, without fit_newton finishing it alone."""
    from pipeline.core import logistic

    X, y = problem()
    full = fit_newton(X, y, 0.5)
    weights = np.ones((len(y), 1))
    rare = X[:, 1] == 1
    weights[rare & (y == 1), 0], weights[rare & (y == 0), 0] = 0.2, 0.3

    def alone(*args, **kwargs):
        raise AssertionError("the fit left the batch for fit_newton")

    monkeypatch.setattr(logistic, "fit_newton", alone)
    thetas = fit_newton_many(X, y, weights, 0.5, np.ones((1, X.shape[1]), dtype=bool),
                             np.append(full.coefficients, full.intercept))
    assert thetas[:, 0] == pytest.approx(exact(X, y, weights[:, 0]), abs=1e-7)


def test_each_folds_hessian_is_the_hessian_of_the_rows_it_keeps(monkeypatch) -> None:
    """k-fold cross-fitting: fit f weighs fold f's rows 0. Its Hessian, from the folds' parts in one
    pass, equals the Hessian built over its own weighting; a row in no fold (fold k) is in every fit.
    Blocks of 256 rows: the parts are added up across blocks, a partial block last."""
    from pipeline.core import logistic

    monkeypatch.setattr(logistic, "CHUNK_ROWS", 256)
    X, y = problem(2000, seed=6)
    curvature = np.random.default_rng(7).random(len(y)) * 0.25
    fold = np.arange(len(y)) % 4  # 3 folds, every fourth row in none
    found = fold_hessians(X, curvature, fold, 3, 0.5)
    assert found.shape == (3, X.shape[1] + 1, X.shape[1] + 1)
    for f in range(3):
        assert found[f] == pytest.approx(hessian(X, curvature * (fold != f), 0.5), rel=1e-12, abs=1e-9)


def test_the_lead_models_cross_fitted_scores_equal_scikit_learns_cross_val_predict() -> None:
    import pandas as pd
    from sklearn.model_selection import cross_val_predict

    from pipeline.core.calibration import lead_folds
    from pipeline.core.lead_model import LeadModel

    X, y = problem(4000, seed=4)
    frame, lead = pd.DataFrame(X, columns=list("abcd")), np.arange(len(y))
    model = LeadModel("logistic", logistic_c=0.5, seed=0)
    model.base_ = model.estimator().fit(frame, y)
    cv = lead_folds(y, lead, 5, 0)
    expected = cross_val_predict(LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12, max_iter=500),
                                 frame, y, cv=cv, method="predict_proba")[:, 1]
    assert model._cross_fitted_logistic(frame, y, cv) == pytest.approx(expected, abs=1e-9)


def test_a_lead_model_started_from_the_previous_folds_reaches_the_same_fit_with_fewer_hessians(monkeypatch) -> None:
    """The train stage starts each validation fold's model from the previous fold's (rows of
    nearly the same leads), matched by column name: a column the previous model lacked starts at 0.
    Same optimum; fewer Hessians, the costly part of a fit (a pass of p^2 products per row)."""
    import pandas as pd

    from pipeline.core import logistic
    from pipeline.core.lead_model import LeadModel

    X, y = problem(4000, seed=8)
    frame, lead = pd.DataFrame(X, columns=["a", "b", "c", "d"]), np.arange(len(y))
    earlier = LeadModel("logistic", logistic_c=0.5, seed=0).fit(frame.iloc[:2500, [1, 0, 2]], y[:2500], lead[:2500])
    built, hessian = [], logistic.hessian
    monkeypatch.setattr(logistic, "hessian", lambda *args: built.append(1) or hessian(*args))
    model = LeadModel("logistic", logistic_c=0.5, seed=0, calibration_folds=1000)  # no calibration: base fits only
    cold = model.fit(frame, y, lead).base_
    cold_hessians = len(built)
    built.clear()
    warm = model.fit(frame, y, lead, start=earlier).base_
    assert warm.coef_ == pytest.approx(cold.coef_, abs=1e-9)
    assert warm.intercept_ == pytest.approx(cold.intercept_, abs=1e-9)
    assert len(built) < cold_hessians


def test_the_lead_models_base_fit_is_scikit_learns_object_and_predicts_like_its_own_fit(tmp_path) -> None:
    import pandas as pd

    from pipeline.core.lead_model import LeadModel
    from pipeline.stages.model import load_model, model_bytes

    X, y = problem(4000, seed=5)
    frame, lead = pd.DataFrame(X, columns=["a = 1", "b", "c", "d"]), np.arange(len(y))
    model = LeadModel("logistic", logistic_c=0.5, seed=0).fit(frame, y, lead)
    own = LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-12, max_iter=500).fit(frame, y)
    base = model.base_
    assert type(base) is LogisticRegression
    for name in ("classes_", "feature_names_in_", "n_features_in_"):
        assert np.array_equal(getattr(base, name), getattr(own, name))
    assert base.classes_.dtype == own.classes_.dtype and base.coef_.shape == own.coef_.shape
    assert base.n_iter_.dtype == own.n_iter_.dtype and base.n_iter_.shape == own.n_iter_.shape
    assert base.predict_proba(frame) == pytest.approx(own.predict_proba(frame), abs=1e-9)
    path = tmp_path / "model.skops"
    path.write_bytes(model_bytes(model.bundle()))
    loaded = load_model(path)["base"]
    assert np.array_equal(loaded.predict_proba(frame), base.predict_proba(frame))
    assert np.array_equal(loaded.predict(frame), own.predict(frame))
    with pytest.raises(ValueError, match="feature names"):  # scikit-learn's own check of the columns
        loaded.predict_proba(frame[["b", "a = 1", "c", "d"]])
