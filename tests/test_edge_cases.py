"""Edge cases that once broke the pipeline (found in review); each reproduces the original failure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.artifacts.readers import read_frequency_signals
from pipeline.core.scorecard import fit_points, half_life
from pipeline.core.signals import SignalSet
from pipeline.core.stats import wilson_interval
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.stages.extract import extract
from pipeline.stages.features import build_features

from .conftest import params_in


def _export(raw: Path, leads: list[tuple], activities: list[tuple], stages: list[tuple], extra: dict | None = None) -> None:
    raw.mkdir(parents=True)
    frame = pd.DataFrame(leads, columns=["lead_id", "created_at", "industry"])
    for name, values in (extra or {}).items():
        frame[name] = values
    frame.to_csv(raw / "leads.csv", index=False)
    pd.DataFrame(activities, columns=["lead_id", "activity", "occurred_at"]).to_csv(raw / "activities.csv", index=False)
    pd.DataFrame(stages, columns=["lead_id", "stage", "entered_at"]).to_csv(raw / "stages.csv", index=False)


def _small(tmp_path: Path) -> Params:
    return params_in(tmp_path, outcome={"as_of": "2024-12-31"},
                     signals={"fit_attributes": ["industry"], "frequency": {"discover": False}, "min_support": 1})


def test_wilson_bounds_never_cross_the_rate() -> None:
    n = np.arange(1, 2001)
    low, _ = wilson_interval(np.zeros_like(n), n)
    _, high = wilson_interval(n, n)
    assert (low == 0.0).all() and (high == 1.0).all()  # was 1e-17 / 0.9999999999999999: a chart crashed


def test_peak_window_is_half_open_like_the_cut_off(tmp_path: Path) -> None:
    params = _small(tmp_path)
    params = params.model_copy(update={
        "signals": params.signals.model_copy(update={
            "frequency": params.signals.frequency.model_copy(update={"windows_days": [1, 30]})}),
        "outcome": params.outcome.model_copy(update={"snapshot_days": [0, 40]})})  # day 40 sees both of A's visits
    _export(params.paths.raw, [("A", "2024-01-01", "x"), ("B", "2024-01-01", "x")],
            [("A", "visit", "2024-01-01T10:00:00"), ("A", "visit", "2024-01-31T10:00:00"),
             ("B", "visit", "2024-01-05T00:00:00"), ("B", "visit", "2024-01-06T00:00:00")],
            [("A", "lead", "2024-01-01"), ("B", "lead", "2024-01-01")])
    extract(params)
    features = build_features(params)[0]
    features = features[features["snapshot_days"] == 40].set_index("lead_id")
    assert features.loc["A", "n__visit"] == 2
    assert features.loc["A", "peak__visit__30d"] == 1  # exactly 30 days apart: not "2 within 30 days"
    assert features.loc["B", "peak__visit__1d"] == 1 and features.loc["B", "peak__visit__30d"] == 2


def test_a_stage_before_the_lead_existed_is_dropped_not_a_win(tmp_path: Path) -> None:
    params = _small(tmp_path)
    _export(params.paths.raw, [("A", "2024-06-01", "x")], [("A", "blog_read", "2024-06-02")],
            [("A", "lead", "2024-06-01"), ("A", "customer", "2023-01-15")])
    report = extract(params)
    assert report["tables"]["stages"]["dropped"] == {"entered before the lead was created": 1}
    assert build_features(params)[0].loc[0, "closed"] == 0


@pytest.mark.parametrize("column", ["matured", "cutoff_at", "snapshot_days", "n__demo"])
def test_lead_columns_that_would_shadow_derived_ones_are_refused(tmp_path: Path, column: str) -> None:
    params = _small(tmp_path)
    _export(params.paths.raw, [("A", "2024-01-01", "x")], [], [("A", "lead", "2024-01-01")], extra={column: ["1"]})
    with pytest.raises(LeadcalError, match=rf"\['{column}'\] are reserved"):
        extract(params)


def test_headers_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    params = _small(tmp_path)
    _export(params.paths.raw, [("A", "2024-01-01", "x")], [], [("A", "lead", "2024-01-01")], extra={"Industry": ["y"]})
    with pytest.raises(LeadcalError, match=r"leads.csv: column\(s\) \['industry'\] appear more than once"):
        extract(params)


@pytest.mark.parametrize("section, values, message", [
    ("signals", {"frequency": {"windows_days": [-3]}}, "greater than 0"),
    ("signals", {"recency_days": [7, 7]}, "more than once"),
    ("signals", {"fit_attributes": ["industry", "industry"]}, "more than once"),
    ("weights", {"bootstrap_samples": 1}, "one refit has no spread"),
    ("train", {"hgb": {"max_depth": 0}}, "greater than or equal to 1"),
])
def test_params_that_used_to_crash_later_are_refused_up_front(tmp_path: Path, section: str, values: dict, message: str) -> None:
    import yaml

    from pipeline.params import load_params

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({section: values}))
    with pytest.raises(LeadcalError, match=message):
        load_params(path)


def _fit_case(rare_value_leads: int) -> tuple[SignalSet, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 3000
    value = rng.choice(["a", "b"], size=n)
    value[:rare_value_leads] = "c"  # too rare to be fitted
    demo = (rng.random(n) < 0.2).astype(np.uint8)
    closed = (rng.random(n) < np.where(demo == 1, 0.25, 0.05) * np.where(value == "a", 1.5, 1.0)).astype(int)
    matrix = pd.DataFrame({"demo_request": demo, "industry = a": (value == "a").astype(np.uint8),
                           "industry = b": (value == "b").astype(np.uint8), "industry = c": (value == "c").astype(np.uint8)})
    catalog = pd.DataFrame({"signal": matrix.columns, "kind": ["engagement", "fit", "fit", "fit"],
                            "type": ["activity", "fit", "fit", "fit"], "attribute": ["demo_request", "industry", "industry", "industry"],
                            "value": ["yes", "a", "b", "c"]})
    return SignalSet(matrix, catalog), closed


def test_support_is_counted_on_the_fitted_leads_and_centring_keeps_every_prediction() -> None:
    from sklearn.linear_model import LogisticRegression

    signals, closed = _fit_case(rare_value_leads=12)
    evidence = pd.DataFrame({"signal": signals.matrix.columns, "leads": 0, "customers": 0, "close_rate": 0.0,
                             "ci_low": 0.0, "ci_high": 0.0, "lift": 0.0, "shrunk_lift": 0.0})
    table, header = fit_points(signals, closed, evidence, 20.0, 1.0, 0, min_support=30)
    rows = table.set_index("signal")
    assert rows.loc["industry = c", "status"].startswith("below minimum support")  # 12 leads < 30
    # the published coefficients give every lead the same log-odds as the fitted model
    columns = ["demo_request", "industry = a", "industry = b"]
    fitted = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-10).fit(signals.matrix[columns], closed)  # exact
    expected = fitted.decision_function(signals.matrix[["demo_request", "industry = a", "industry = b"]])
    published = header["base_log_odds"] + signals.matrix.to_numpy(float) @ rows.loc[signals.matrix.columns, "coefficient"].to_numpy()
    assert np.allclose(published, expected)


def test_no_usable_signal_is_a_clear_error_before_the_half_life() -> None:
    signals, closed = _fit_case(rare_value_leads=0)
    with pytest.raises(LeadcalError, match="every signal is below the minimum support"):
        half_life(signals, pd.DataFrame(index=signals.matrix.index), closed, decay=True, fixed_days=None,
                  min_support=10**6, regularization_c=1.0, seed=0)


def test_boosting_trains_when_an_activity_never_occurs_in_training(default_run: Params) -> None:
    from pipeline import io
    from pipeline.core.lead_model import LeadModel, model_matrix
    from pipeline.core.signals import build_signals

    features = io.read_parquet(default_run.paths.features / "features.parquet").iloc[:4000].copy()
    features["n__live_chat"] = 0
    features["age__live_chat"] = np.nan  # a tool introduced after these leads
    signals = build_signals(features, default_run.signals, read_frequency_signals(default_run.paths.models))
    X = model_matrix(features, signals, "hgb", None, default_run.outcome.snapshot_days)
    assert not X.filter(like="age__").isna().any().any()
    known = (features["closed"] >= 0).to_numpy()
    model = LeadModel("hgb", hgb=default_run.train.hgb, seed=default_run.seed)
    model.fit(X[known], features.loc[known, "closed"].to_numpy(), signals.leads()[known])
    assert model.predict_proba(X[:5]).shape == (5, 2)


def test_an_activity_named_null_survives_the_round_trip(tmp_path: Path) -> None:
    from pipeline import io
    from pipeline.stages import close_rates
    from pipeline.stages.features import write_features

    params = _small(tmp_path)
    leads = [(f"L{i}", "2024-01-01", "x") for i in range(40)]
    activities = [(f"L{i}", "null", "2024-01-02") for i in range(20)]
    stages = [(f"L{i}", "customer", "2024-02-15") for i in range(0, 40, 4)]
    _export(params.paths.raw, leads, activities, stages)
    extract(params)
    write_features(params)
    close_rates.run(params)
    table = io.read_csv(params.paths.models / "close_rates.csv").set_index("signal")
    assert table.loc["null", "leads"] == 20


def test_fit_signals_from_text_in_several_arrow_chunks_match_the_values(default_run: Params) -> None:
    """A fit attribute read from Parquet can be several Arrow chunks: each lead's fit signal is
    still exactly 'its value equals the signal's value' (the values are compared as codes)."""
    import pyarrow as pa

    from pipeline import io
    from pipeline.core.signals import build_signals, fit_values

    features = io.read_parquet(default_run.paths.features / "features.parquet").iloc[:3000].reset_index(drop=True)
    industry = pa.array(features["industry"].astype(object).to_numpy(), type=pa.large_string())
    features["industry"] = pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array(
        [industry.slice(0, 1000), industry.slice(1000, 1200), industry.slice(2200)])), index=features.index)
    assert features["industry"].array._pa_array.num_chunks == 3
    signals = build_signals(features, default_run.signals)
    values = fit_values(features, default_run.signals)["industry"].astype(object).to_numpy()
    fit = signals.catalog[signals.catalog["attribute"] == "industry"]
    assert len(fit) > 2
    for name, value in zip(fit["signal"], fit["value"]):
        np.testing.assert_array_equal(signals.matrix[name].to_numpy(), (values == value).astype(np.uint8))


def test_half_life_is_not_identifiable_when_every_activity_is_logged_at_creation(tmp_path: Path) -> None:
    """Events stamped at creation (a form that created the lead, a wide export's flags) all have the same
    age at a snapshot: no half-life can be told from another, so none is reported (no [1, 365] "estimate")."""
    from pipeline import io
    from pipeline.cli import STAGES

    rng = np.random.default_rng(3)
    n = 4000
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.uniform(0, 400, n), unit="D").round("s")
    ids = [f"C{i:05d}" for i in range(n)]
    did = rng.random(n) < 0.4
    won = rng.random(n) < np.where(did, 0.15, 0.05)  # the activity matters, its timing says nothing
    params = params_in(tmp_path, signals={"fit_attributes": ["industry"], "frequency": {"discover": False}},
                       weights={"bootstrap_samples": 0})
    _export(params.paths.raw, [(i, c.isoformat(), "x") for i, c in zip(ids, created)],
            [(i, "webinar_attendance", c.isoformat()) for i, c, d in zip(ids, created, did) if d],
            [(i, "lead", c.isoformat()) for i, c in zip(ids, created)]
            + [(i, "customer", (c + pd.Timedelta(days=45)).isoformat()) for i, c, w in zip(ids, created, won) if w])
    extract(params)
    for stage in ("features", "close-rates", "weights"):
        STAGES[stage][0](params)
    weights = io.read_json(params.paths.models / "weights.json")
    assert weights["half_life_days"] is None and weights["half_life_interval_95"] is None
    assert weights["half_life_source"].startswith("not identifiable")
    assert next(s for s in weights["signals"] if s["signal"] == "webinar_attendance")["points"] >= 15  # still scored
