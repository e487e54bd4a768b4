"""The last stage: charts for people, the headline numbers for `dvc metrics show`, and the details.

Every number is read from the artifacts of the earlier stages; nothing is recomputed,
so the report cannot disagree with what was published.

`models/metrics.json`, DVC's metrics file, holds only the headline numbers (HEADLINE): one short
row in `dvc metrics show` and a readable `dvc metrics diff` between runs. Everything else (spreads,
per-fold values, the validation window, strings such as the calibration method) goes to
`models/metrics/report.json`, which is an output, not a metric.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from pipeline import io, spreadsheet
from pipeline.artifacts import CLOSE_RATES, PUBLICATION, PUBLISHED, THRESHOLDS, WEIGHTS
from pipeline.params import Params
from pipeline.report import charts
from pipeline.report.charts import figure_bytes

log = logging.getLogger(__name__)


def _publication(models: Path) -> dict[str, object]:
    record = io.read_json(models / PUBLISHED / PUBLICATION)
    return {"status": record["status"], "drift_flags": len(record.get("drift", {}).get("flags", [])),
            "rejection_reasons": len(record.get("reasons", []))}


def _by_fold(folds: list[dict]) -> dict[str, dict]:
    return {f"fold_{fold['fold']}": {k: v for k, v in fold.items() if k != "fold"} for fold in folds}


# the figures a marketer or an analyst compares between runs: all numbers, at most 15, with names
# short enough that `dvc metrics show` prints them on one line under 200 characters
HEADLINE_SCORES = {"auc": "auc", "pr_auc": "pr_auc", "ece": "ece", "lift": "top_decile_lift"}


def headline(details: dict) -> dict[str, object]:
    """The headline numbers out of the detailed summary (models/metrics/report.json):
    close_rate: average close rate of the matured leads; threshold: the MQL threshold in points;
    mql_share, mql_close: share of leads reaching it and their close rate on the held-out months;
    drift: how many drift flags the publication raised; model.* and points.*: AUC, PR-AUC,
    calibration error (ECE) and top-decile lift of the model and of the points table, mean over
    the validation folds."""
    thresholds = details["thresholds"]
    return {
        "close_rate": details["close_rates"]["average_close_rate"],
        "threshold": thresholds["threshold"],
        "mql_share": thresholds["validation_mql_share"],
        "mql_close": thresholds["validation_mql_close_rate"],
        "drift": details["publication"]["drift_flags"],
        "model": {name: details["model"][key] for name, key in HEADLINE_SCORES.items()},
        "points": {name: details["points_table"][key] for name, key in HEADLINE_SCORES.items()},
    }


def run(params: Params) -> dict[str, object]:
    models = params.paths.models
    rates = io.read_json(models / "metrics" / "close_rates.json")
    train = io.read_json(models / "metrics" / "train.json")
    thresholds = io.read_json(models / THRESHOLDS)
    metrics = report_metrics(models, rates, train, io.read_json(models / "metrics" / "weights.json"), thresholds)
    # every input is read (and every chart drawn) before anything is written: a missing or bad
    # artifact stops the stage with the previous report intact
    figures = _figures(models, params.outcome.horizon_days, rates, train, thresholds)
    io.write_json(models / "metrics" / "report.json", metrics)
    io.write_json(models / "metrics.json", headline(metrics))
    for name, fig in figures.items():
        io.write_bytes(models / "charts" / name, figure_bytes(fig))
    log.info("report: %d charts in %s", len(figures), models / "charts")
    return metrics


def report_metrics(models: Path, rates: dict, train: dict, weights: dict, thresholds: dict) -> dict[str, object]:
    """Every number of the run in one place (models/metrics/report.json), read from the stages' metrics."""
    return {
        "close_rates": rates,
        "model": {"type": train["model"]["type"], "calibration": train["model"]["calibration"],
                  **train["model"]["mean"], **{f"{k}_sd": v for k, v in train["model"]["sd"].items()}},
        "points_table": {**train["points_table"]["mean"], **{f"{k}_sd": v for k, v in train["points_table"]["sd"].items()},
                         **weights},
        "folds": len(train["model"]["folds"]),
        "validated_on": train["validated_on"],  # later months, or random folds of a snapshot export
        "publication": _publication(models),
        # per fold, keyed so that `dvc metrics show` flattens them: model_folds.fold_1.auc ...
        "model_folds": _by_fold(train["model"]["folds"]),
        "points_table_folds": _by_fold(train["points_table"]["folds"]),
        "validation": train["validation"],
        "thresholds": {"threshold": thresholds["threshold"], **{f"validation_{k}": v for k, v in thresholds["validation"].items()}},
    }


def _figures(models: Path, horizon_days: int, rates: dict, train: dict, thresholds: dict) -> dict[str, Figure]:
    """Every chart of models/charts/, each stating its population and n (docs/chart-style.md):
    who the leads are, from the artifacts."""
    close_rates = spreadsheet.read_csv(models / CLOSE_RATES)
    funnel = io.read_json(models / "funnel.json")
    points_table = io.read_json(models / WEIGHTS)
    matured = charts.matured_population(rates, horizon_days)
    return {
        "close_rate_by_activity.png": charts.close_rates_chart(close_rates, rates["average_close_rate"], "activity",
                                                               population=matured),
        "close_rate_by_fit.png": charts.close_rates_chart(close_rates, rates["average_close_rate"], "fit",
                                                          population=matured),
        "score_distribution.png": charts.score_distribution_chart(
            io.read_csv(models / "plots" / "score_distribution.csv"), thresholds["threshold"],
            population=charts.population("training leads", train["training"], counts=False) + ", each at its highest score"),
        "fit_engagement_matrix.png": charts.matrix_chart(
            io.read_csv(models / "plots" / "matrix.csv"), thresholds["training"]["average_close_rate"],
            population=charts.population("training leads", train["training"], counts=False),
            average_of="these training leads"),
        "funnel.png": charts.funnel_chart(
            funnel["funnel"],
            population=f"matured leads (created at least {horizon_days} days before the export)"),
        "funnel_by_month.png": charts.monthly_trend_chart(
            io.read_csv(models / "plots" / "funnel_by_month.csv"), counts=funnel["by_month"],
            export_date=funnel["population"].get("export_date"),
            horizon_days=horizon_days,
            population="all leads by month of creation (SQL → customer: matured leads only)"),
        "points_table.png": charts.points_table_chart(
            pd.DataFrame(points_table["signals"]),
            population=charts.population("fitted on the training leads", points_table["fitted_on"])),
        "cumulative_gain.png": charts.cumulative_gain_chart(
            io.read_csv(models / "plots" / "cumulative_gain.csv"),
            population=charts.population("held-out months", train["validation"])),
        "calibration.png": charts.calibration_chart({
            "predictive model": io.read_csv(models / "plots" / "calibration_model.csv"),
            "points table": io.read_csv(models / "plots" / "calibration_points.csv"),
        }, population=charts.population("held-out months", train["validation"]),
            unit="rows" if train["validation"].get("rows", 0) != train["validation"]["leads"] else "leads"),
    }
