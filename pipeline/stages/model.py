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

from pipeline import io, model_file, spreadsheet
from pipeline.artifacts import CLOSE_RATES, FEATURES
from pipeline.artifacts.readers import read_frequency_signals, read_scorecard
from pipeline.core.explain import global_factors, reference_values
from pipeline.core.lead_model import LeadModel, model_matrix, supported_columns
from pipeline.core.scorecard import PointsScorecard
from pipeline.core.signals import (
    SignalSet,
    activities_in,
    build_signals,
    count_leads,
    decay_inputs,
    fit_rows,
    labelled,
    lead_starts,
    purge,
    time_split,
    validation_cohorts,
)
from pipeline.core.stats import calibration_table, classification_metrics, gain_table, stratified_auc
from pipeline.design import SNAPSHOT_NOTE, is_snapshot, random_folds
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.report.model_card import model_card

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # bump when the feature layout changes; older model files are then refused

# Types a leadcal model file may contain beyond skops' defaults; nothing else loads.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
TAKE_BLOCK_ROWS = 1 << 12  # rows gathered per block by `take`: a block of a hundred columns fits in cache


def rolling_folds(
    features: pd.DataFrame, validation_months: int, folds: int, horizon_days: int
) -> list[tuple[pd.Series, pd.Series]]:
    """(train mask, validation mask) per fold, oldest first; the last is the published split.

    Rolling origin: fold k validates on a block of `validation_months` cohorts and trains
    on the matured leads before it whose outcome was known when the block began (see
    `time_split`). The last block is the one `time_split` holds out.
    """
    if is_snapshot(features):  # k-fold cross-validation on random folds of leads (pipeline.design)
        return random_folds(features)
    known = labelled(features)
    cohorts = sorted(features.loc[known, "cohort"].unique())
    last_train, last_valid = time_split(features, validation_months, horizon_days)
    result = [(last_train, last_valid)]
    end = len(cohorts) - len(validation_cohorts(features, validation_months))
    for _ in range(folds - 1):
        start = end - validation_months
        if start < 2:  # at least two months to train on
            break
        valid = known & features["cohort"].isin(cohorts[start:end])
        train = purge(known & features["cohort"].isin(cohorts[:start]), valid, features, horizon_days)
        result.insert(0, (train, valid))
        end = start
    return result


def lead_model(params: Params) -> LeadModel:
    """An unfitted LeadModel with the run's settings (params train, seed)."""
    t = params.train
    return LeadModel(t.model, t.logistic_c, t.hgb, params.seed)


def fold_points(
    ages: pd.DataFrame, signals: SignalSet, closed: np.ndarray, train: np.ndarray, valid: np.ndarray,
    evidence: pd.DataFrame, published: PointsScorecard, params: Params, start: PointsScorecard | None = None,
) -> tuple[np.ndarray, PointsScorecard]:
    """The points table refitted on one fold's training leads (same signals, half-life and scale),
    and the held-out rows' totals: the fair comparison with a model trained on the same leads.
    `ages`: every row's decay inputs (decay_inputs), `closed`: every row's outcome; `start`: the
    previous fold's refit, where the solver starts."""
    w = params.weights
    card = PointsScorecard(w.points_to_double_odds, w.regularization_c, params.seed, params.signals.min_support,
                           published.half_life_days, published.caps, published.numeric_attributes)
    card.fit(card.decay(signals.take(train), ages[train]), closed[train], evidence, start)
    return card.score(signals.take(valid), ages[valid])["total_points"].to_numpy(), card


def summarise_folds(folds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = [k for k in folds[0] if isinstance(folds[0][k], float)]
    return {
        "mean": {k: float(np.nanmean([f[k] for f in folds])) for k in keys},
        "sd": {k: float(np.nanstd([f[k] for f in folds], ddof=1)) if len(folds) > 1 else 0.0 for k in keys},
    }


def check_minimum_data(y: np.ndarray, lead: np.ndarray, train: np.ndarray, params: Params) -> None:
    t = params.train
    customers, leads = count_leads(lead, train & (y == 1)), count_leads(lead, train)
    if customers < t.min_customers or leads < t.min_leads:
        raise LeadcalError(
            f"refusing to publish a predictive model: the training cohorts hold {leads} matured leads and {customers} "
            f"customers; at least {t.min_leads} leads and {t.min_customers} customers are needed "
            f"(params train.min_leads / train.min_customers). Missing: {max(t.min_leads - leads, 0)} leads, "
            f"{max(t.min_customers - customers, 0)} customers. The close rates and the points table are still published "
            f"in {params.paths.models}; `dvc repro --keep-going` runs the stages that do not need the model."
        )


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


def model_bytes(bundle: dict[str, object]) -> bytes:
    """The saved form of a model bundle: byte-identical for the same model on any machine."""
    for part in bundle.values():
        if hasattr(part, "_bin_mapper"):  # HistGradientBoosting records the thread count it was fitted with
            part._bin_mapper.n_threads = None
    return _canonical_skops(sio.dumps(bundle))


def load_model(path: str | Path) -> dict[str, object]:
    """Load a model file, refusing any type outside the allow-list (no code runs on load).

    Before reading: a regular file of at most model_file.MAX_MODEL_BYTES, also unpacked; after
    loading: the bundle model_bytes saves ({"base", "calibrator"}, fitted), else one clear error.
    """
    path = Path(path)
    model_file.check_file(path, model_file.MAX_MODEL_BYTES, "model file")
    model_file.check_archive(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # not a zip, or not a skops file
        raise LeadcalError(f"{path}: not a leadcal model file (skops format expected): {exc}") from exc
    unexpected = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unexpected:
        raise LeadcalError(f"{path}: refuses to load: the file holds types leadcal does not trust: {unexpected}")
    try:
        bundle = sio.load(path, trusted=TRUSTED_TYPES)
    except Exception as exc:  # allowed types, but entries skops cannot rebuild
        raise LeadcalError(f"{path}: not a valid leadcal model file: {type(exc).__name__}: {exc}") from exc
    model_file.check_bundle(bundle, path)
    return bundle


def schema(features: pd.DataFrame, params: Params, frequency: list, half_life_days: float | None) -> dict[str, object]:
    """What a model expects of the data it scores; `leadcal score` refuses anything else."""
    return {
        "version": SCHEMA_VERSION,
        "model_type": params.train.model,
        "fit_attributes": list(params.signals.fit_attributes),
        "numeric_bins": {k: list(v) for k, v in params.signals.numeric_bins.items()},
        "snapshot_days": list(params.outcome.snapshot_days),
        "horizon_days": params.outcome.horizon_days,
        "activities": activities_in(features),
        "frequency": [spec.model_dump() for spec in frequency],
        "recency_days": list(params.signals.recency_days),
        "half_life_days": half_life_days,
    }


def take(X: pd.DataFrame, rows: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """X.loc[rows, columns] (`rows` a mask), gathered into one C-ordered array, the layout the
    logistic fit reads: pandas' .loc, the model's to_numpy and a C-ordered copy of its F-ordered
    result were three copies of the fold's rows (24 s of the train stage at a million leads). The
    same values, gathered in the column's own type (the 0/1 signals' uint8: a float copy of the
    whole column first cost more than the gathering) and made float on the way in, a block of
    rows at a time: a block's rows stay in cache while each column is written into them (a
    column at a time down all the rows wrote a cache line per value, 0.3 s a call at 1M leads)."""
    index = np.flatnonzero(rows)
    sources = [X[name].to_numpy() for name in columns]
    values = np.empty((len(index), len(columns)))
    for begin in range(0, len(index), TAKE_BLOCK_ROWS):
        block, picked = values[begin:begin + TAKE_BLOCK_ROWS], index[begin:begin + TAKE_BLOCK_ROWS]
        for position, source in enumerate(sources):
            block[:, position] = source[picked]
    return pd.DataFrame(values, index=X.index[index], columns=list(columns), copy=False)


def _validate_folds(features: pd.DataFrame, signals: SignalSet, X: pd.DataFrame, y: np.ndarray, folds: list,
                    card: PointsScorecard, evidence: pd.DataFrame,
                    params: Params) -> tuple[list[dict], list[dict], dict | None]:
    """Each rolling-origin fold: the model and the points table fitted on the months before it and
    judged on its block. Returns the model's and the points table's fold metrics, and the last fold
    (the published model, trained on everything before the latest block), None if none could run."""
    lead, snapshot = signals.leads(), signals.snapshots()
    snapshot_export = is_snapshot(features)
    ages = decay_inputs(features)
    fold_rows, points_rows, published = [], [], None
    previous, previous_card = None, None  # the last fold's fits: the next fold's start (its rows are nearly these)
    for index, (train, valid) in enumerate(folds, start=1):
        rows, held = fit_rows(train.to_numpy(), params.train.max_fit_leads, params.seed, lead), valid.to_numpy()
        if y[rows].sum() == 0 or y[held].sum() == 0:
            log.warning("train: fold %d skipped: no customer in its training or validation leads", index)
            continue
        columns = supported_columns(X, signals, rows, params.signals.min_support)
        # progress before the slow part (gradient boosting with its calibration: tens of seconds a fold)
        log.info("train: fold %d of %d: fitting the %s model on %d rows (%d leads, %d customers)", index, len(folds),
                 params.train.model, int(rows.sum()), count_leads(lead, rows), count_leads(lead, rows & (y == 1)))
        fit_matrix = take(X, rows, columns)
        model = lead_model(params).fit(fit_matrix, y[rows], lead[rows], start=previous)
        previous = model
        # the published fold's matrices serve its explanations too (_explained): gathered once
        train_probability = model.probability(fit_matrix) if index == len(folds) else None
        del fit_matrix
        held_matrix = take(X, held, columns)
        probability = model.probability(held_matrix)
        if index == len(folds):
            points, points_card = card.score(signals.take(held), ages[held])["total_points"].to_numpy(), card
            published = {"model": model, "columns": columns, "rows": rows, "held": held, "held_matrix": held_matrix,
                         "probability": probability, "train_probability": train_probability, "points": points}
        else:
            points, points_card = fold_points(ages, signals, y, rows, held, evidence, card, params, previous_card)
            previous_card = points_card
        cohorts = features.loc[valid, "cohort"]
        if snapshot_export:  # no months: the fold is a random share of the leads (pipeline.design)
            cohorts = pd.Series([f"random fold {index} of {len(folds)}"])
        period = {"fold": index, "from": cohorts.min(), "to": cohorts.max(), "leads": count_leads(lead, held),
                  "rows": int(held.sum()), "customers": count_leads(lead, held & (y == 1)),
                  "trained_on_leads": count_leads(lead, rows)}
        strata = snapshot[held]
        fold_rows.append({**period, **classification_metrics(y[held], probability, strata=strata),
                          "auc_by_snapshot": _auc_by_snapshot(y[held], probability, strata),
                          "calibration": model.method_})
        points_prob = points_card.probability(points, strata)
        points_rows.append({**period, **classification_metrics(y[held], points_prob, score=points, strata=strata),
                            "auc_by_snapshot": _auc_by_snapshot(y[held], points, strata)})
        log.info("train: fold %d (%s): AUC model %.3f, points %.3f; ECE model %.4f", index,
                 period["from"] if snapshot_export else f"{period['from']} to {period['to']}",
                 fold_rows[-1]["auc"], points_rows[-1]["auc"], fold_rows[-1]["ece"])
    return fold_rows, points_rows, published


def _explained(published: dict, signals: SignalSet, X: pd.DataFrame) -> tuple[dict, pd.DataFrame, list[float]]:
    """The published model's reference fit values, its global factors (on the held-out leads) and its
    A/B/C grade cut-offs (training probability quartiles), each computed per lead, not per row: a
    lead seen three times is one lead of the average and of the grades."""
    model, columns, rows, held = published["model"], published["columns"], published["rows"], published["held"]
    lead = signals.leads()
    first_rows = rows & np.isin(np.arange(len(lead)), lead_starts(lead))
    reference = reference_values(signals.catalog, take(X, first_rows, columns))
    lead_effects = model.explain(published.pop("held_matrix"), signals.catalog, reference)
    factors = global_factors(lead_effects, lead[held])
    train_probability = published["train_probability"]
    per_lead = 1.0 / np.bincount(lead[rows])[lead[rows]]  # each lead's rows weigh one lead together
    grade_cutoffs = [float(q) for q in np.quantile(train_probability, [0.75, 0.5, 0.25], weights=per_lead,
                                                   method="inverted_cdf")]
    return reference, factors, grade_cutoffs


def _by_snapshot(y: np.ndarray, snapshot: np.ndarray, probability: np.ndarray, points: np.ndarray,
                 points_prob: np.ndarray) -> dict[str, dict]:
    """The published fold, snapshot by snapshot: how well each moment's leads are ranked (held-out rows)."""
    by_snapshot = {}
    for age in np.unique(snapshot):
        at = snapshot == age
        by_snapshot[str(int(age))] = {
            "rows": int(at.sum()), "customers": int(y[at].sum()),
            "model": classification_metrics(y[at], probability[at]),
            "points_table": classification_metrics(y[at], points_prob[at], score=points[at]),
        }
    return by_snapshot


def _write_plots(models: Path, y: np.ndarray, lead: np.ndarray, snapshot: np.ndarray, probability: np.ndarray,
                 points: np.ndarray, points_prob: np.ndarray) -> None:
    """The published fold's calibration curves and gain, on its held-out rows, for `dvc plots`."""
    calibration = pd.DataFrame(calibration_table(y, probability, groups=lead))
    # the diagonal for `dvc plots` (observed = predicted): DVC's templates draw columns, not lines
    calibration["perfectly_calibrated"] = calibration["predicted"]
    io.write_csv(models / "plots" / "calibration_model.csv", calibration)
    io.write_csv(models / "plots" / "calibration_points.csv",
                 pd.DataFrame(calibration_table(y, points_prob, groups=lead)))
    io.write_csv(models / "plots" / "cumulative_gain.csv", pd.DataFrame(
        gain_table(y, {"model": probability, "points_table": points}, strata=snapshot)))


def _train_metrics(params: Params, features: pd.DataFrame, n_folds: int, fold_rows: list[dict],
                   points_rows: list[dict], published: dict, y: np.ndarray, lead: np.ndarray, snapshot: np.ndarray,
                   points_prob: np.ndarray) -> dict[str, object]:
    """metrics/train.json: every fold of the model and of the points table, their means, what the
    published model was trained and validated on, and its validation snapshot by snapshot."""
    rows, held, model = published["rows"], published["held"], published["model"]
    snapshot_export = is_snapshot(features)
    train_cohorts = features.loc[rows, "cohort"]
    if snapshot_export:
        train_cohorts = pd.Series([f"the other {n_folds - 1} random folds"])
    return {
        "model": {"type": params.train.model, "calibration": model.method_, **summarise_folds(fold_rows),
                  "folds": fold_rows},
        "points_table": {**summarise_folds(points_rows), "folds": points_rows},
        "training": {"from": train_cohorts.min(), "to": train_cohorts.max(), "leads": count_leads(lead, rows),
                     "rows": int(rows.sum()), "customers": count_leads(lead, rows & (y == 1))},
        "validation": {k: fold_rows[-1][k] for k in ("from", "to", "leads", "rows", "customers")},
        "validation_by_snapshot": _by_snapshot(y[held], snapshot[held], published["probability"], published["points"],
                                               points_prob),
        "validated_on": SNAPSHOT_NOTE if snapshot_export else
        "later months, unseen in training (rolling origin: each fold trained only on the months before it)",
    }


def run(params: Params) -> dict[str, object]:
    """Rolling-origin validation, the published (latest) model, explanations and the model card."""
    models = params.paths.models
    features = io.read_parquet(params.paths.features / FEATURES)
    frequency = read_frequency_signals(models)
    signals = build_signals(features, params.signals, frequency)
    card = read_scorecard(models)
    evidence = spreadsheet.read_csv(models / CLOSE_RATES)
    folds = rolling_folds(features, params.train.validation_months, params.train.folds, params.outcome.horizon_days)
    if not folds[-1][1].any():
        raise LeadcalError(
            f"{params.paths.features / FEATURES}: only one month of matured leads: "
            "no later cohort to validate on; the model needs at least two months of history. "
            "Still available: close rates and the points table in models/; `dvc repro --keep-going` runs the "
            "stages that do not need the model"
        )
    X = model_matrix(features, signals, params.train.model, card.half_life_days,
                     list(params.outcome.snapshot_days))
    y = features["closed"].to_numpy()
    lead, snapshot = signals.leads(), signals.snapshots()
    check_minimum_data(y, lead, folds[-1][0].to_numpy(), params)

    fold_rows, points_rows, published = _validate_folds(features, signals, X, y, folds, card, evidence, params)
    if published is None:
        raise LeadcalError(
            f"the latest {params.train.validation_months} months of matured leads hold no customer: the model "
            "cannot be judged on them; lower train.validation_months or add history"
        )
    # the published model: the last fold's, trained on everything before the latest validation block
    model, columns, held = published["model"], published["columns"], published["held"]
    probability, points = published["probability"], published["points"]
    points_prob = card.probability(points, snapshot[held])
    reference, factors, grade_cutoffs = _explained(published, signals, X)

    metrics = _train_metrics(params, features, len(folds), fold_rows, points_rows, published, y, lead, snapshot,
                             points_prob)
    description = {
        "format": "skops",
        "schema": schema(features, params, frequency, card.half_life_days),
        "features": list(columns),
        "calibration": {"method": model.method_, "cross_validated_log_loss": model.losses_},
        "grade_cutoffs": {"A": grade_cutoffs[0], "B": grade_cutoffs[1], "C": grade_cutoffs[2]},
        "reference_fit_values": reference,
        "trained_on": metrics["training"],
        "validated_on": metrics["validation"],
    }
    io.write_bytes(models / "model.skops", model_bytes(model.bundle()))
    io.write_json(models / "model.json", description)
    io.write_json(models / "metrics" / "train.json", metrics)
    spreadsheet.write_csv(models / "factors.csv", factors)  # for people: formula-like names escaped
    _write_plots(models, y[held], lead[held], snapshot[held], probability, points, points_prob)
    io.write_text(models / "model_card.md", model_card(params, metrics, description, factors))
    m, p = metrics["model"]["mean"], metrics["points_table"]["mean"]
    log.info("train: %d folds, mean AUC model %.3f, points table %.3f; mean ECE %.4f; calibration %s",
             len(fold_rows), m["auc"], p["auc"], m["ece"], model.method_)
    return metrics


def _auc_by_snapshot(y: np.ndarray, score: np.ndarray, snapshot: np.ndarray) -> dict[str, float]:
    """AUC among the leads seen at each snapshot age (NaN where one outcome is missing)."""
    return {str(int(age)): stratified_auc(y[snapshot == age], score[snapshot == age]) for age in np.unique(snapshot)}


def read_model(models: Path) -> tuple[LeadModel, dict[str, object]]:
    """The published model (loaded safely) and its description (model.json), checked to match."""
    model_path, description_path = models / "model.skops", models / "model.json"
    bundle = load_model(model_path)
    description = model_file.read_description(description_path, SCHEMA_VERSION)
    model_file.check_pair(bundle, description, model_path, description_path)
    return LeadModel.from_bundle(bundle, (description.get("calibration") or {}).get("method")), description
