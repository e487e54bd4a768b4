"""The predictive model (issue 4): leakage, validation over time, calibration,
explanations, scoring new leads, minimum data, model card."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from pipeline import io
from pipeline.artifacts.readers import read_frequency_signals, read_scorecard
from pipeline.commands.score import score
from pipeline.core.calibration import apply_calibrator, choose_method, fit_calibrator
from pipeline.core.explain import effects, global_factors, top_reasons
from pipeline.core.lead_model import model_matrix
from pipeline.core.scorecard import score_features
from pipeline.core.signals import build_signals
from pipeline.core.stats import expected_calibration_error
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.stages.model import read_model, rolling_folds, take

from .conftest import params_in, run_stages

# --- calibration and explanations, by hand ---------------------------------------------------------

def test_calibration_repairs_distorted_probabilities() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.0, 0.3, 20_000)
    y = (rng.random(20_000) < truth).astype(int)
    raw = truth**2 * 3  # ranks right, probabilities wrong
    method, losses = choose_method(raw, y, seed=0)
    assert set(losses) == {"sigmoid", "isotonic"} and method in losses
    calibrated = apply_calibrator(fit_calibrator(raw, y, method), raw)
    assert expected_calibration_error(y, calibrated) < 0.01 < expected_calibration_error(y, raw)
    assert (np.diff(calibrated[np.argsort(raw, kind="stable")]) >= -1e-12).all()  # never reorders leads


def test_calibration_falls_back_to_sigmoid_with_few_customers() -> None:
    y = np.array([1, 1, 1] + [0] * 200)
    method, losses = choose_method(np.linspace(0.01, 0.2, len(y)), y, seed=0)
    assert (method, losses) == ("sigmoid", {})


def test_occlusion_effect_of_a_linear_model_is_its_coefficient() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"demo_request": [1.0, 0.0, 1.0, 0.0] * 50, "blog_read": [0.0, 1.0, 1.0, 0.0] * 50})
    y = (rng.random(200) < np.where(X["demo_request"] > 0, 0.4, 0.1)).astype(int)
    model = LogisticRegression(C=1e6).fit(X, y)
    catalog = pd.DataFrame({"signal": ["demo_request", "blog_read"], "type": "activity", "attribute": ["demo_request", "blog_read"]})
    found = effects(lambda frame: model.predict_proba(frame)[:, 1], X, catalog, {})
    assert np.allclose(found["demo_request"].dropna(), model.coef_[0][0])
    assert found.loc[1, "demo_request"] != found.loc[1, "demo_request"]  # NaN: lead 1 did not request a demo
    reasons = top_reasons(found.iloc[[2]], count=1)
    assert reasons == [f"demo_request (odds x{np.exp(model.coef_[0][0]):.2g})"]
    factors = global_factors(found)
    assert factors["signal"].iloc[0] == "demo_request" and factors["leads"].iloc[0] == 100


def test_effects_leave_the_scored_matrix_as_it_was() -> None:
    """The effects are taken on copies: the caller's frame (here column-major, as pandas hands it out
    without a copy) keeps every value, with a fit attribute every lead has a value of."""
    rng = np.random.default_rng(3)
    value = rng.choice(["a", "b"], size=400)
    X = pd.DataFrame({"demo_request": (rng.random(400) < 0.3) * 1.0, "industry = a": (value == "a") * 1.0,
                      "industry = b": (value == "b") * 1.0})
    y = (rng.random(400) < 0.1 + 0.3 * X["demo_request"]).astype(int)
    model = LogisticRegression().fit(X, y)
    catalog = pd.DataFrame({"signal": X.columns, "type": ["activity", "fit", "fit"],
                            "attribute": ["demo_request", "industry", "industry"]})
    before = X.copy()
    found = effects(lambda frame: model.predict_proba(frame)[:, 1], X, catalog,
                    {"industry": {"industry = a": 0.5, "industry = b": 0.5}})
    pd.testing.assert_frame_equal(X, before)
    assert found["industry = a"].notna().sum() + found["industry = b"].notna().sum() == len(X)


def test_take_gathers_the_rows_and_columns_as_c_ordered_floats() -> None:
    """The fold's matrix: X.loc[rows, columns] as floats, in blocks of rows (a partial block last)."""
    rng = np.random.default_rng(5)
    n = 3 * 4096 + 17
    X = pd.DataFrame({"a": (rng.random(n) < 0.3).astype(np.uint8), "b": rng.random(n), "c": rng.integers(0, 9, n)},
                     index=pd.RangeIndex(n) * 2)
    rows = rng.random(n) < 0.7
    found = take(X, rows, ["c", "a"])
    pd.testing.assert_frame_equal(found, X.loc[rows, ["c", "a"]].astype(float))
    assert found.to_numpy().flags.c_contiguous


def _occlusion_by_hand(predict, X: pd.DataFrame, catalog: pd.DataFrame, reference: dict) -> pd.DataFrame:  # noqa: ANN001
    """The occlusion effects written plainly in pandas, a copy of the rows per signal and per value."""
    from pipeline.core.explain import logit

    base = logit(predict(X))
    out = pd.DataFrame(np.nan, index=X.index, columns=list(catalog["signal"]))
    for signal in catalog.loc[catalog["type"] != "fit", "signal"]:
        has = X[signal].to_numpy() > 0
        rows = X.loc[has].copy()
        rows[signal] = 0.0
        rows[[c for c in X.columns if c.startswith(f"{signal} @ day ")]] = 0.0
        for column, value in ((f"n__{signal}", 0.0), (f"age__{signal}", 10_000.0)):
            if column in rows:
                rows[column] = value
        out.loc[has, signal] = base[has] - logit(predict(rows))
    for shares in reference.values():
        has = X[list(shares)].to_numpy().sum(axis=1) > 0
        average = np.zeros(int(has.sum()))
        for value, share in shares.items():
            rows = X.loc[has].copy()
            rows[list(shares)] = 0.0
            rows[value] = 1.0
            average += share * logit(predict(rows))
        own = X.loc[has, list(shares)].to_numpy().argmax(axis=1)
        for position, name in enumerate(shares):
            out.loc[X.index[has][own == position], name] = (base[has] - average)[own == position]
    return out


@pytest.mark.parametrize("kind", ["logistic", "hgb"])
def test_effects_equal_plain_occlusion_to_the_last_bit(kind: str) -> None:
    """Two fit attributes every lead has a value of (their columns edited in one copy and put back
    between them), an activity with its per-snapshot, count and age columns, and a rare one: the
    effects equal the plain pandas occlusion bit for bit, for a linear and a tree model."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from pipeline.schema import NEVER_DAYS

    assert NEVER_DAYS == 10_000.0  # the age _occlusion_by_hand gives "never done"
    rng = np.random.default_rng(11)
    n = 3000
    industry, size = rng.choice(["a", "b", "c"], size=n), rng.choice(["s", "m"], size=n)
    demo, blog = (rng.random(n) < 0.3), (rng.random(n) < 0.03)
    X = pd.DataFrame({
        "demo_request": demo * rng.random(n), "demo_request @ day 7": demo * (rng.random(n) < 0.5),
        "n__demo_request": demo * rng.integers(1, 5, n), "age__demo_request": np.where(demo, rng.random(n) * 30, 10_000.0),
        "blog_read": blog * 1.0, "industry = a": industry == "a", "industry = b": industry == "b",
        "industry = c": industry == "c", "size = s": size == "s", "size = m": size == "m"}).astype(float)
    y = (rng.random(n) < 0.05 + 0.2 * demo + 0.1 * (industry == "a") + 0.05 * (size == "m")).astype(int)
    model = (LogisticRegression(max_iter=5000) if kind == "logistic" else HistGradientBoostingClassifier(max_iter=20)).fit(X, y)
    catalog = pd.DataFrame({"signal": ["demo_request", "blog_read", "industry = a", "industry = b", "industry = c",
                                       "size = s", "size = m"],
                            "type": ["activity", "activity", "fit", "fit", "fit", "fit", "fit"],
                            "attribute": ["demo_request", "blog_read", "industry", "industry", "industry", "size", "size"]})
    reference = {"industry": {"industry = a": 0.5, "industry = b": 0.3, "industry = c": 0.2},
                 "size": {"size = s": 0.6, "size = m": 0.4}}
    predict = lambda frame: model.predict_proba(frame)[:, 1]  # noqa: E731
    pd.testing.assert_frame_equal(effects(predict, X, catalog, reference),
                                  _occlusion_by_hand(predict, X, catalog, reference), check_exact=True)


# --- validation over time, on the default run --------------------------------------------------------

def test_rolling_folds_train_only_on_the_past(default_run: Params) -> None:
    features = io.read_parquet(default_run.paths.features / "features.parquet")
    folds = rolling_folds(features, default_run.train.validation_months, default_run.train.folds,
                          default_run.outcome.horizon_days)
    assert len(folds) == default_run.train.folds
    previous_end = None
    for train, valid in folds:
        assert features.loc[train, "cohort"].max() < features.loc[valid, "cohort"].min()
        # purged: every training outcome was known when the held-out period began
        horizon = pd.Timedelta(days=default_run.outcome.horizon_days)
        assert (features.loc[train, "created_at"] + horizon <= features.loc[valid, "created_at"].min()).all()
        assert features.loc[valid, "cohort"].nunique() == default_run.train.validation_months
        if previous_end is not None:
            assert features.loc[valid, "cohort"].min() > previous_end  # blocks do not overlap
        previous_end = features.loc[valid, "cohort"].max()
        assert not (train & valid).any() and (features.loc[train | valid, "closed"] >= 0).all()
    metrics = io.read_json(default_run.paths.models / "metrics" / "train.json")
    assert [f["fold"] for f in metrics["model"]["folds"]] == [1, 2, 3]
    for key in ("auc", "pr_auc", "log_loss", "brier", "ece", "top_decile_lift", "top_decile_capture"):
        assert key in metrics["model"]["mean"] and key in metrics["model"]["sd"]


def test_model_is_within_002_auc_of_the_truth_and_calibrated(default_run: Params) -> None:
    """Where the generator's true probability is exactly what a lead's row can know, the leads
    still open at the last snapshot (day 30, the slow leads' moment of decision), the model
    ranks them within 0.02 AUC of the truth, fold by fold on the same rows."""
    features = io.read_parquet(default_run.paths.features / "features.parquet")
    truth = pd.read_csv(default_run.paths.sample / "truth_probabilities.csv").set_index("lead_id")["p_close"]
    p_true = truth.reindex(features["lead_id"]).to_numpy()
    y = features["closed"].to_numpy()
    last = default_run.outcome.snapshot_days[-1]
    at_last = (features["snapshot_days"] == last).to_numpy()
    folds = rolling_folds(features, default_run.train.validation_months, default_run.train.folds,
                          default_run.outcome.horizon_days)
    truth_auc = np.mean([roc_auc_score(y[v.to_numpy() & at_last], p_true[v.to_numpy() & at_last]) for _, v in folds])
    model = io.read_json(default_run.paths.models / "metrics" / "train.json")["model"]
    model_auc = np.mean([fold["auc_by_snapshot"][str(last)] for fold in model["folds"]])
    assert len(model["folds"]) == len(folds)
    assert model_auc >= truth_auc - 0.02, (model_auc, truth_auc)
    assert model["mean"]["ece"] <= 0.02
    assert model["calibration"] in ("sigmoid", "isotonic")


def test_model_card_reports_the_run(default_run: Params) -> None:
    card = (default_run.paths.models / "model_card.md").read_text()
    metrics = io.read_json(default_run.paths.models / "metrics" / "train.json")
    assert f"{metrics['model']['mean']['auc']:.3f} ± {metrics['model']['sd']['auc']:.3f}" in card
    assert f"{metrics['training']['customers']} customers" in card
    for fold in metrics["model"]["folds"]:
        assert f"| {fold['fold']} | {fold['from']} to {fold['to']} |" in card
    assert "## Known limits" in card


def test_too_few_customers_refuses_to_publish(default_run: Params) -> None:
    from pipeline.stages import model as model_stage

    strict = default_run.model_copy(update={"train": default_run.train.model_copy(update={"min_customers": 10**6})})
    before = (default_run.paths.models / "model.skops").read_bytes()
    with pytest.raises(LeadcalError, match=r"refusing to publish a predictive model.*1000000 customers are needed.*Missing: 0 leads, \d+ customers"):
        model_stage.run(strict)
    assert (default_run.paths.models / "model.skops").read_bytes() == before
    assert (default_run.paths.models / "close_rates.csv").exists()


# --- no leakage -------------------------------------------------------------------------------------------

def test_a_post_outcome_activity_gets_no_weight(default_run: Params, tmp_path: Path) -> None:
    """Plant an activity logged only after each customer's deal ("contract_signed") into the default
    export: it is never seen before a cut-off, so it gets no leads, no points, and the model is the
    default run's (same half-life, so the same decayed matrix; the bootstrap only adds spreads)."""
    half_life = io.read_json(default_run.paths.models / "weights.json")["half_life_days"]
    params = params_in(tmp_path, default_run, weights={"bootstrap_samples": 0, "half_life_days": half_life})
    shutil.copytree(default_run.paths.raw, params.paths.raw)
    stages = pd.read_csv(params.paths.raw / "stages.csv")
    won = stages[stages["stage"] == "customer"]
    extra = pd.DataFrame({"lead_id": won["lead_id"], "activity": "contract_signed",
                          "occurred_at": (pd.to_datetime(won["entered_at"]) + pd.Timedelta(hours=2))
                          .dt.strftime("%Y-%m-%dT%H:%M:%SZ")})
    extra.to_csv(params.paths.raw / "activities.csv", mode="a", header=False, index=False)
    run_stages(params, ["extract", "features", "close-rates", "weights", "train"])
    rates = pd.read_csv(params.paths.models / "close_rates.csv").set_index("signal")
    weights = pd.read_csv(params.paths.models / "weights.csv").set_index("signal")
    assert rates.loc["contract_signed", "leads"] == 0  # never before anyone's cut-off
    assert weights.loc["contract_signed", "points"] == 0
    clean = io.read_json(default_run.paths.models / "metrics" / "train.json")["model"]["mean"]
    planted = io.read_json(params.paths.models / "metrics" / "train.json")["model"]["mean"]
    assert planted["auc"] == pytest.approx(clean["auc"], abs=1e-9)  # nothing to learn from it


# --- scoring new leads --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def new_leads(tmp_path_factory: pytest.TempPathFactory, default_run: Params) -> Path:
    """300 leads of the sample, exported as a CRM would: leads and activities only."""
    folder = tmp_path_factory.mktemp("new_leads")
    leads = pd.read_csv(default_run.paths.raw / "leads.csv").iloc[1000:1300]
    activities = pd.read_csv(default_run.paths.raw / "activities.csv")
    leads.to_csv(folder / "leads.csv", index=False)
    activities[activities["lead_id"].isin(leads["lead_id"])].to_csv(folder / "activities.csv", index=False)
    return folder


def test_score_reproduces_the_pipeline_for_the_same_leads(default_run: Params, new_leads: Path, tmp_path: Path) -> None:
    """A lead scored at the moment of one of its snapshots gets exactly the pipeline's row there:
    same signals, decay, snapshot, probability and points."""
    features = io.read_parquet(default_run.paths.features / "features.parquet")
    ids = set(pd.read_csv(new_leads / "leads.csv")["lead_id"])
    rows = features[features["lead_id"].isin(ids) & (features["snapshot_days"] > 0)]
    picked = np.concatenate([rows.index[rows["snapshot_days"] == 7][:4], rows.index[rows["snapshot_days"] == 30][:4]])
    signals = build_signals(features, default_run.signals, read_frequency_signals(default_run.paths.models))
    model, description = read_model(default_run.paths.models)
    X = model_matrix(features, signals, description["schema"]["model_type"], description["schema"]["half_life_days"],
                     description["schema"]["snapshot_days"])
    expected = model.probability(X.loc[picked, description["features"]])
    card = read_scorecard(default_run.paths.models)
    weights, header = card.table_, card.header_
    rows = features.loc[picked]  # the index is the row position
    points = score_features(rows, signals.take(picked), weights, header)["total_points"].to_numpy()
    for k, row in enumerate(rows.itertuples(index=False)):
        scored = score(new_leads, tmp_path / "one.csv", default_run, as_of=row.cutoff_at).set_index("lead_id")
        assert scored.loc[row.lead_id, "probability"] == pytest.approx(expected[k], rel=1e-9)
        assert scored.loc[row.lead_id, "total_points"] == points[k]
        assert scored.loc[row.lead_id, "scored_as_of"] == row.cutoff_at.strftime("%Y-%m-%dT%H:%M:%S")


def test_score_gives_grades_reasons_and_the_mql_flag(default_run: Params, new_leads: Path, tmp_path: Path) -> None:
    scored = score(new_leads, tmp_path / "scored.csv", default_run).set_index("lead_id")
    threshold = io.read_json(default_run.paths.models / "thresholds.json")["threshold"]
    assert (scored["mql"] == (scored["total_points"] >= threshold)).all()
    assert (scored["total_points"] == scored["fit_points"] + scored["engagement_points"]).all()
    assert set(scored["grade"]) <= {"A", "B", "C", "D"} and scored["grade"].nunique() >= 3
    best, worst = scored["probability"].idxmax(), scored["probability"].idxmin()
    assert scored.loc[best, "grade"] == "A" and scored.loc[worst, "grade"] == "D"
    assert scored["top_reasons"].str.contains(r"\(odds x").mean() > 0.95
    written = pd.read_csv(tmp_path / "scored.csv")
    assert list(written.columns)[:5] == ["lead_id", "probability", "fit_points", "engagement_points", "total_points"]


def test_score_in_batches_gives_the_same_result(default_run: Params, new_leads: Path, tmp_path: Path) -> None:
    whole = score(new_leads, tmp_path / "whole.parquet", default_run)
    batched = score(new_leads, tmp_path / "batched.parquet", default_run, batch_size=7)
    pd.testing.assert_frame_equal(whole, batched)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "batched.parquet"), batched)


def test_score_refuses_a_model_with_another_feature_schema(default_run: Params, new_leads: Path, tmp_path: Path) -> None:
    other = default_run.model_copy(update={"signals": default_run.signals.model_copy(update={"fit_attributes": ["industry"]})})
    with pytest.raises(LeadcalError, match=r"different feature schema.*fit_attributes"):
        score(new_leads, tmp_path / "x.csv", other)
    assert not (tmp_path / "x.csv").exists()


def test_fit_effects_are_relative_to_the_average_lead_like_the_points() -> None:
    # Linear model: a fit value's effect equals its coefficient minus the share-weighted mean.
    rng = np.random.default_rng(2)
    value = rng.choice(["a", "b", "c"], size=3000, p=[0.6, 0.3, 0.1])
    X = pd.DataFrame({"industry = a": (value == "a") * 1.0, "industry = b": (value == "b") * 1.0,
                      "industry = c": (value == "c") * 1.0})
    y = (rng.random(3000) < np.select([value == "a", value == "b"], [0.05, 0.10], 0.2)).astype(int)
    model = LogisticRegression(C=1e6).fit(X, y)
    catalog = pd.DataFrame({"signal": X.columns, "type": "fit", "attribute": "industry"})
    from pipeline.core.explain import reference_values

    reference = reference_values(catalog, X)
    found = effects(lambda frame: model.predict_proba(frame)[:, 1], X, catalog, reference)
    shares = np.array([reference["industry"][c] for c in X.columns])
    centred = model.coef_[0] - (model.coef_[0] * shares).sum()
    for column, expected in zip(X.columns, centred):
        assert np.allclose(found[column].dropna(), expected)
    assert found["industry = a"].dropna().iloc[0] < 0 < found["industry = c"].dropna().iloc[0]


def test_metrics_file_holds_only_the_headline_numbers(default_run: Params) -> None:
    """DVC's metrics file: at most 15 numbers (no strings, no per-fold values), each the figure of
    the detailed summary it names, so `dvc metrics show` stays one short row."""
    headline = io.read_json(default_run.paths.models / "metrics.json")
    details = io.read_json(default_run.paths.models / "metrics" / "report.json")
    flat = {f"{group}.{k}": v for group, value in headline.items()
            for k, v in (value.items() if isinstance(value, dict) else [("", value)])}
    assert len(flat) <= 15
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat.values()), flat
    assert headline["model"]["auc"] == details["model"]["auc"]
    assert headline["points"]["lift"] == details["points_table"]["top_decile_lift"]
    assert headline["close_rate"] == details["close_rates"]["average_close_rate"]
    assert headline["threshold"] == io.read_json(default_run.paths.models / "thresholds.json")["threshold"]
    assert headline["mql_close"] == io.read_json(default_run.paths.models / "thresholds.json")["validation"]["mql_close_rate"]


def test_metrics_details_hold_every_fold_and_the_spread(default_run: Params) -> None:
    metrics = io.read_json(default_run.paths.models / "metrics" / "report.json")
    train = io.read_json(default_run.paths.models / "metrics" / "train.json")
    assert metrics["folds"] == len(train["model"]["folds"]) == 3
    aucs = [metrics["model_folds"][f"fold_{k}"]["auc"] for k in (1, 2, 3)]
    assert metrics["model"]["auc"] == pytest.approx(np.mean(aucs))
    assert metrics["model"]["auc_sd"] == pytest.approx(np.std(aucs, ddof=1))
    for key in ("pr_auc", "log_loss", "brier", "ece", "top_decile_lift", "top_decile_capture"):
        assert key in metrics["model_folds"]["fold_1"] and f"{key}_sd" in metrics["model"]


def test_fit_rows_samples_uniformly_and_reproducibly() -> None:
    from pipeline.core.signals import fit_rows

    train = np.zeros(10_000, dtype=bool)
    train[::2] = True  # 5,000 training rows
    assert (fit_rows(train, None, 1) == train).all() and (fit_rows(train, 6_000, 1) == train).all()
    sample = fit_rows(train, 1_000, 7)
    assert sample.sum() == 1_000 and not (sample & ~train).any()  # only training rows
    assert (fit_rows(train, 1_000, 7) == sample).all() and not (fit_rows(train, 1_000, 8) == sample).all()
    # uniform: every part of the training rows is represented alike
    halves = np.flatnonzero(sample) < 5_000
    assert 0.45 < halves.mean() < 0.55


@pytest.mark.parametrize("kind", ["codes", "repeated positions", "empty", "negative", "ids"])
def test_distinct_leads_are_numpys_unique(kind: str) -> None:
    """Lead codes are counted by marking them; the result is np.unique's, element and type, for
    codes picked by a mask or by repeated, unsorted positions (a bootstrap), and for anything else."""
    from pipeline.core.signals import count_leads, distinct

    rng = np.random.default_rng(3)
    lead = np.repeat(np.arange(5_000), rng.integers(1, 4, 5_000))
    picked = {"codes": lead[rng.random(len(lead)) < 0.3], "repeated positions": lead[rng.integers(0, len(lead), 900)],
              "empty": lead[:0], "negative": lead - 7, "ids": np.array([f"lead-{c}" for c in lead[::-37]])}[kind]
    expected = np.unique(picked)
    assert distinct(picked).dtype == expected.dtype and np.array_equal(distinct(picked), expected)
    assert count_leads(lead, lead % 3 == 0) == len(np.unique(lead[lead % 3 == 0]))


def test_points_fitted_on_a_sample_stay_close_to_the_full_fit(default_run: Params, tmp_path: Path) -> None:
    """train.max_fit_leads: the sampled fit says so in weights.json and keeps the points' order."""
    from pipeline.stages import weights

    models = tmp_path / "models"
    shutil.copytree(default_run.paths.models, models)
    sampled = default_run.model_copy(update={
        "paths": default_run.paths.model_copy(update={"models": models}),
        "train": default_run.train.model_copy(update={"max_fit_leads": 6_000}),
        "weights": default_run.weights.model_copy(update={"bootstrap_samples": 0}),
    })
    weights.run(sampled)
    fitted = io.read_json(models / "weights.json")
    full = io.read_json(default_run.paths.models / "weights.json")
    assert fitted["fitted_on"]["leads"] == 6_000
    assert fitted["fitted_on"]["sampled_from_leads"] == full["fitted_on"]["leads"] > 6_000
    points = pd.DataFrame(fitted["signals"]).set_index("signal")["points"]
    reference = pd.DataFrame(full["signals"]).set_index("signal")["points"].reindex(points.index)
    assert points.corr(reference, method="spearman") > 0.85
    assert (points != reference).any()  # a real refit, not the same table


def test_score_sees_the_last_weeks_and_only_open_leads(default_run: Params, new_leads: Path, tmp_path: Path) -> None:
    """Scored as it is now: a year-old lead's first-month burst is not "4+ pricing visits in 30 days"
    any more, a lead already won is not scored, and a lead created after --as-of neither."""
    leads = pd.read_csv(new_leads / "leads.csv")
    events = pd.read_csv(new_leads / "activities.csv")
    visits = events[events["activity"] == "pricing_page_visit"].groupby("lead_id").size()
    busy = visits[visits >= 4].index[0]
    folder = tmp_path / "later"
    folder.mkdir()
    leads.to_csv(folder / "leads.csv", index=False)
    events.to_csv(folder / "activities.csv", index=False)
    won = leads.loc[leads["lead_id"] != busy, "lead_id"].iloc[0]
    created = pd.Timestamp(leads.loc[leads["lead_id"] == busy, "created_at"].iloc[0])
    pd.DataFrame({"lead_id": [won], "stage": ["customer"], "entered_at": ["2024-01-20T00:00:00Z"]}).to_csv(
        folder / "stages.csv", index=False)
    early = score(folder, tmp_path / "early.csv", default_run, as_of=(created + pd.Timedelta(days=29)).tz_localize(None)
                  ).set_index("lead_id")
    late = score(folder, tmp_path / "late.csv", default_run, as_of=(created + pd.Timedelta(days=365)).tz_localize(None)
                 ).set_index("lead_id")
    assert early.loc[busy, "engagement_points"] > 20  # the visits count while they are recent
    assert late.loc[busy, "engagement_points"] == 0  # a year on, nothing of that month is left
    assert won not in late.index and len(late) == len(leads) - 1
    born = pd.to_datetime(leads["created_at"]).dt.tz_localize(None)
    moment = born.sort_values().iloc[10]  # ten leads created before it, the others after
    first = score(folder, tmp_path / "first.csv", default_run, as_of=moment).set_index("lead_id")
    decided = {won} if moment >= pd.Timestamp("2024-01-20") else set()
    assert set(first.index) == set(leads.loc[born <= moment, "lead_id"]) - decided and len(first) < len(leads)


def test_a_lead_past_day_0_is_scored_in_the_first_snapshot_that_sees_activity() -> None:
    from pipeline.schema import snapshot_stratum

    ages = np.array([0.0, 0.5, 3.0, 7.0, 12.0, 29.9, 30.0, 400.0])
    assert snapshot_stratum(ages, [0, 7, 30]).tolist() == [0, 7, 7, 7, 7, 7, 30, 30]
    assert snapshot_stratum(ages, [1, 7, 30]).tolist() == [1, 1, 1, 7, 7, 7, 30, 30]
    assert snapshot_stratum(ages, [30]).tolist() == [30] * 8
