"""Predictive model of P(close): trained on earlier cohorts, judged on the latest ones.

A random train/test split on lead data flatters a model (leads of the same month
share campaigns and seasons), so validation is by time: the latest
`train.validation_months` cohorts with known outcomes are held out. The points
table is scored on exactly the same held-out leads, so the two are compared fairly.

The model file is written with skops (no pickle) and re-zipped with fixed
timestamps so the same inputs give the same bytes; loading accepts only an
allow-list of scikit-learn types, so a model file from elsewhere cannot run code.
"""

from __future__ import annotations

import io as _io
import logging
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from pipeline import io
from pipeline.errors import LeadcalError
from pipeline.features import AGE_PREFIX, COUNT_PREFIX
from pipeline.params import Params
from pipeline.signals import SignalSet, build_signals, read_frequency_signals, time_split
from pipeline.stats import calibration_table, classification_metrics
from pipeline.weights import points_probability, read_weights, score_features

log = logging.getLogger(__name__)

# Types a leadcal model file may contain beyond skops' defaults; nothing else loads.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def model_matrix(features: pd.DataFrame, signal_matrix: pd.DataFrame, kind: str) -> pd.DataFrame:
    """What the model sees: the signals, plus (for boosting) counts, recency and month.

    Everything here is known at the lead's cut-off: counts and ages come from the
    window before it, the month from the creation date.
    """
    if kind == "logistic":
        return signal_matrix.astype(float)
    extra = features[[c for c in features.columns if c.startswith((COUNT_PREFIX, AGE_PREFIX))]]
    month = features["created_at"].dt.month.rename("created_month")
    return pd.concat([signal_matrix.astype(float), extra.astype(float), month.astype(float)], axis=1)


def make_estimator(params: Params) -> HistGradientBoostingClassifier | LogisticRegression:
    t = params.train
    if t.model == "logistic":
        return LogisticRegression(C=t.logistic_c, l1_ratio=0, solver="lbfgs", max_iter=5000, random_state=params.seed)
    h = t.hgb
    return HistGradientBoostingClassifier(
        learning_rate=h.learning_rate, max_iter=h.max_iter, max_depth=h.max_depth,
        min_samples_leaf=h.min_samples_leaf, l2_regularization=h.l2_regularization,
        early_stopping=False, random_state=params.seed,
    )


def evaluate(
    features: pd.DataFrame, signals: SignalSet, train_mask: pd.Series, valid_mask: pd.Series,
    weights: pd.DataFrame, header: dict, params: Params,
) -> dict[str, object]:
    """Fit on the training cohorts, score the held-out cohorts with model and points table."""
    X = model_matrix(features, signals.matrix, params.train.model)
    y = features["closed"].to_numpy()
    y_train, y_valid = y[train_mask.to_numpy()], y[valid_mask.to_numpy()]
    for name, labels in (("training", y_train), ("validation", y_valid)):
        if labels.sum() == 0:
            raise LeadcalError(
                f"the {name} cohorts have no customer ({len(labels)} leads): no model can be trained or judged; "
                f"add history or change train.validation_months"
            )
    estimator = make_estimator(params).fit(X[train_mask.to_numpy()], y_train)
    model_probability = estimator.predict_proba(X[valid_mask.to_numpy()])[:, 1]
    valid = valid_mask.to_numpy()
    points = score_features(features[valid], SignalSet(signals.matrix[valid], signals.catalog), weights, header)
    points = points["total_points"].to_numpy()
    points_prob = points_probability(points, header)
    cohorts = features.loc[valid_mask, "cohort"]
    train_cohorts = features.loc[train_mask, "cohort"]
    return {
        "estimator": estimator,
        "feature_names": list(X.columns),
        "metrics": {
            "model": {"type": params.train.model, **classification_metrics(y_valid, model_probability)},
            "points_table": classification_metrics(y_valid, points_prob, score=points),
            "training": {"from": train_cohorts.min(), "to": train_cohorts.max(), "leads": int(len(y_train)), "customers": int(y_train.sum())},
            "validation": {"from": cohorts.min(), "to": cohorts.max(), "leads": int(len(y_valid)), "customers": int(y_valid.sum())},
        },
        "calibration": {
            "model": pd.DataFrame(calibration_table(y_valid, model_probability)),
            "points": pd.DataFrame(calibration_table(y_valid, points_prob)),
        },
    }


def _canonical_skops(payload: bytes) -> bytes:
    """Make a skops file depend only on the model, not on the process that wrote it.

    skops names its entries after Python object ids (memory addresses) and stamps
    the time into the zip. Ids are renumbered in order of first appearance in
    schema.json (the `__id__` fields and the `N.npy` file references), entries are
    sorted and timestamps fixed, so the same model gives the same bytes.
    """
    source = zipfile.ZipFile(_io.BytesIO(payload))
    schema = source.read("schema.json").decode("utf-8")
    renumber: dict[str, str] = {}
    for match in re.finditer(r'"__id__": (\d+)|"file": "(\d+)\.npy"', schema):
        renumber.setdefault(match.group(1) or match.group(2), str(len(renumber) + 1))
    schema = re.sub(r'("__id__": )(\d+)', lambda m: m.group(1) + renumber[m.group(2)], schema)
    schema = re.sub(r'("file": ")(\d+)(\.npy")', lambda m: m.group(1) + renumber[m.group(2)] + m.group(3), schema)
    entries = {"schema.json": schema.encode("utf-8")}
    for name in source.namelist():
        if name.endswith(".npy"):
            entries[f"{renumber[name[:-4]]}.npy"] = source.read(name)
    out = _io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name in sorted(entries):
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            target.writestr(entry, entries[name])
    return out.getvalue()


def model_bytes(estimator: object) -> bytes:
    return _canonical_skops(sio.dumps(estimator))


def load_model(path: str | Path) -> object:
    """Load a model file, refusing any type outside the allow-list (no code runs on load)."""
    path = Path(path)
    if not path.exists():
        raise LeadcalError(f"{path}: model file not found (run `dvc repro` to train one)")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # not a zip, or not a skops file
        raise LeadcalError(f"{path}: not a leadcal model file (skops format expected): {exc}") from exc
    unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unexpected:
        raise LeadcalError(f"{path}: refuses to load: the file holds types leadcal does not trust: {unexpected}")
    return sio.load(path, trusted=TRUSTED_TYPES)


def predict(estimator: object, X: pd.DataFrame) -> np.ndarray:
    return estimator.predict_proba(X)[:, 1]


def run(params: Params) -> dict[str, object]:
    """features + weights -> models/model.skops, models/model.json, metrics and calibration data."""
    features = io.read_parquet(params.paths.features / "features.parquet")
    signals = build_signals(features, params, read_frequency_signals(params.paths.models))
    weights, header = read_weights(params.paths.models)
    train_mask, valid_mask = time_split(features, params.train.validation_months)
    if not valid_mask.any():
        raise LeadcalError(
            f"{params.paths.features / 'features.parquet'}: only one month of matured leads: "
            "no later cohort to validate on; the model needs at least two months of history"
        )
    log.info("train: %s model on %d leads, validating on %d later leads",
             params.train.model, int(train_mask.sum()), int(valid_mask.sum()))
    result = evaluate(features, signals, train_mask, valid_mask, weights, header, params)
    models = params.paths.models
    io.write_bytes(models / "model.skops", model_bytes(result["estimator"]))
    io.write_json(models / "model.json", {
        "format": "skops",
        "type": params.train.model,
        "features": result["feature_names"],
        "trained_on": result["metrics"]["training"],
        "validated_on": result["metrics"]["validation"],
    })
    io.write_json(models / "metrics" / "train.json", result["metrics"])
    for scorer, table in result["calibration"].items():
        io.write_csv(models / "plots" / f"calibration_{scorer}.csv", table)
    m, p = result["metrics"]["model"], result["metrics"]["points_table"]
    log.info("train: validation AUC model %.3f, points table %.3f; top-decile lift %.2f vs %.2f",
             m["auc"], p["auc"], m["top_decile_lift"], p["top_decile_lift"])
    return result["metrics"]
