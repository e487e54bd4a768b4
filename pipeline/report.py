"""The last stage: charts for people and one metrics file for `dvc metrics show`.

Every number is read from the artifacts of the earlier stages; nothing is recomputed,
so the report cannot disagree with what was published.
"""

from __future__ import annotations

import io as _io
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from pipeline import charts, io, spreadsheet
from pipeline.params import Params

log = logging.getLogger(__name__)


def figure_bytes(fig: Figure) -> bytes:
    """PNG bytes without a timestamp or version stamp, so reruns are byte-identical."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _publication(models: Path) -> dict[str, object]:
    record = io.read_json(models / "published" / "publication.json")
    return {"status": record["status"], "drift_flags": len(record.get("drift", {}).get("flags", [])),
            "rejection_reasons": len(record.get("reasons", []))}


def _by_fold(folds: list[dict]) -> dict[str, dict]:
    return {f"fold_{fold['fold']}": {k: v for k, v in fold.items() if k != "fold"} for fold in folds}


def run(params: Params) -> dict[str, object]:
    models = params.paths.models
    close_rates = spreadsheet.read_csv(models / "close_rates.csv")
    rates = io.read_json(models / "metrics" / "close_rates.json")
    train = io.read_json(models / "metrics" / "train.json")
    weights = io.read_json(models / "metrics" / "weights.json")
    thresholds = io.read_json(models / "thresholds.json")
    metrics = {
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
    io.write_json(models / "metrics.json", metrics)
    figures = {
        "close_rate_by_activity.png": charts.close_rates_chart(close_rates, rates["average_close_rate"], "activity"),
        "close_rate_by_fit.png": charts.close_rates_chart(close_rates, rates["average_close_rate"], "fit"),
        "score_distribution.png": charts.score_distribution_chart(
            io.read_csv(models / "plots" / "score_distribution.csv"), thresholds["threshold"]),
        "fit_engagement_matrix.png": charts.matrix_chart(
            io.read_csv(models / "plots" / "matrix.csv"), thresholds["training"]["average_close_rate"]),
        "funnel.png": charts.funnel_chart(io.read_json(models / "funnel.json")["funnel"]),
        "funnel_by_month.png": charts.monthly_trend_chart(io.read_csv(models / "plots" / "funnel_by_month.csv")),
        "points_table.png": charts.points_table_chart(pd.DataFrame(io.read_json(models / "weights.json")["signals"])),
        "cumulative_gain.png": charts.cumulative_gain_chart(io.read_csv(models / "plots" / "cumulative_gain.csv")),
        "calibration.png": charts.calibration_chart({
            "predictive model": io.read_csv(models / "plots" / "calibration_model.csv"),
            "points table": io.read_csv(models / "plots" / "calibration_points.csv"),
        }),
    }
    for name, fig in figures.items():
        io.write_bytes(models / "charts" / name, figure_bytes(fig))
    log.info("report: %d charts in %s", len(figures), models / "charts")
    return metrics
