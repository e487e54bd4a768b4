"""Each signal's close rate against the average close rate: the evidence table.

For every signal: how many matured leads had it, how many of them became customers
within the horizon, that close rate with a Wilson interval, and its lift (close
rate / average close rate of all matured leads). A lift of 3 means "leads who did
this closed three times as often as the average lead". Signals seen in fewer than
`min_support` leads are flagged: their rate is too noisy to act on.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.signals import SignalSet, build_signals, labelled
from pipeline.stats import wilson_interval

log = logging.getLogger(__name__)

COLUMNS = [
    "signal", "kind", "type", "attribute", "value", "leads", "customers", "close_rate",
    "ci_low", "ci_high", "lift", "lift_ci_low", "lift_ci_high", "low_support",
]


def close_rate_table(
    signals: SignalSet, closed: np.ndarray, confidence: float = 0.95, min_support: int = 30
) -> tuple[pd.DataFrame, float]:
    """(table, average close rate) over the given leads (matured ones only).

    The lift interval divides the signal's interval by the average, treating the
    average (estimated from every lead) as known; with thousands of leads its own
    uncertainty is small next to that of a single signal.
    """
    closed = np.asarray(closed, dtype=np.int64)
    if len(closed) == 0:
        raise ValueError("no matured leads to compute close rates on")
    matrix = signals.matrix.to_numpy(dtype=np.int64)
    leads = matrix.sum(axis=0)
    customers = closed @ matrix
    average = float(closed.mean())
    with np.errstate(divide="ignore", invalid="ignore"):
        close_rate = np.where(leads > 0, customers / np.maximum(leads, 1), 0.0)
    low, high = wilson_interval(customers, leads, confidence)
    table = signals.catalog.copy()
    table["leads"] = leads
    table["customers"] = customers
    table["close_rate"] = close_rate
    table["ci_low"] = low
    table["ci_high"] = high
    scale = 1.0 / average if average > 0 else 0.0
    table["lift"] = close_rate * scale
    table["lift_ci_low"] = low * scale
    table["lift_ci_high"] = high * scale
    table["low_support"] = leads < min_support
    return table[COLUMNS], average


def run(params: Params) -> dict[str, object]:
    """features.parquet -> models/close_rates.csv (+ its metrics fragment)."""
    features = io.read_parquet(params.paths.features / "features.parquet")
    known = labelled(features).to_numpy()
    signals = build_signals(features, params)
    subset = SignalSet(matrix=signals.matrix[known], catalog=signals.catalog)
    table, average = close_rate_table(
        subset, features.loc[known, "closed"].to_numpy(), params.close_rates.confidence, params.signals.min_support
    )
    if average == 0:
        raise LeadcalError(
            f"{params.paths.features / 'features.parquet'}: none of the {int(known.sum())} matured leads became a "
            f"customer within {params.outcome.horizon_days} days: close rates and lifts are undefined"
        )
    models = params.paths.models
    io.write_csv(models / "close_rates.csv", table)
    metrics = {
        "average_close_rate": average,
        "matured_leads": int(known.sum()),
        "customers": int(features.loc[known, "closed"].sum()),
        "signals": int(len(table)),
        "signals_low_support": int(table["low_support"].sum()),
    }
    io.write_json(models / "metrics" / "close_rates.json", metrics)
    log.info("close_rates: %d signals, average close rate %.2f %%", len(table), 100 * average)
    return metrics
