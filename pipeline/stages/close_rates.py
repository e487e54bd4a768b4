"""Each signal's close rate against the close rate to expect: the evidence table.

For every signal: how many matured leads showed it while still open, how many of them
became customers within the horizon, that close rate with a Wilson interval, and its lift:
close rate / the close rate of leads seen at the same moments. A lift of 3 means "leads
who did this closed three times as often as comparable leads". Signals seen in fewer than
`min_support` leads are flagged: their rate is too noisy to act on.

Leads are seen at several snapshots (pipeline.stages.features). Each signal counts a lead once,
at the first snapshot where it showed the signal, so every lead is one independent unit
of the interval. The expected close rate is the close rate of *all* leads still open at
those snapshots: a lead still open at day 30 closes less often than a new one (the fast
deciders are gone), and a signal that is only seen at day 30 must not look bad for that.
Fit values are seen at the first snapshot, where the expected rate is the average close
rate: that of every lead still open then (all of them, unless some were won or lost at creation).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline import io, spreadsheet
from pipeline.artifacts import CLOSE_RATES, FEATURES, SIGNALS
from pipeline.core.frequency import FoundThreshold, discover
from pipeline.core.signals import (
    SignalSet,
    activities_in,
    build_signals,
    estimation_snapshot,
    first_shown,
    labelled,
    time_split,
)
from pipeline.core.stats import beta_binomial_strength, shrink_close_rate, wilson_interval
from pipeline.errors import LeadcalError
from pipeline.params import FrequencySignal, Params
from pipeline.schema import PEAK_PREFIX

log = logging.getLogger(__name__)

COLUMNS = [
    "signal", "kind", "type", "attribute", "value", "leads", "customers", "close_rate", "ci_low", "ci_high",
    "expected_close_rate", "lift", "lift_ci_low", "lift_ci_high", "shrunk_close_rate", "shrunk_lift", "low_support",
]


def close_rate_by_snapshot(closed: np.ndarray, snapshot: np.ndarray) -> dict[int, float]:
    """Close rate of the labelled rows at each snapshot age: of the leads still open then, how many closed."""
    closed = np.asarray(closed, dtype=np.int64)
    return {int(s): float(closed[snapshot == s].mean()) for s in np.unique(snapshot)}


def close_rate_table(
    signals: SignalSet, closed: np.ndarray, confidence: float = 0.95, min_support: int = 30
) -> tuple[pd.DataFrame, float]:
    """(table, average close rate) over the given rows (matured ones only; `closed`: 1 for a customer, else 0).

    Each signal counts a lead once, at its first row showing the signal; `expected_close_rate`
    is the mean, over those leads, of the close rate of every row at that row's snapshot
    (`close_rate_by_snapshot`), and lift = close rate / expected. The average close rate is
    that of the first snapshot, where every lead is seen once.

    The lift interval divides the signal's interval by the expected rate, treating it (estimated
    from every lead) as known; with thousands of leads its own uncertainty is small next to that
    of a single signal. `shrunk_close_rate` is the empirical-Bayes estimate
    (pipeline.core.stats.shrink_close_rate): rare signals are pulled towards their expected rate,
    common ones keep their own. The prior strength is in `table.attrs["prior_strength"]`.
    """
    closed = np.asarray(closed, dtype=np.int64)
    if len(closed) == 0:
        raise ValueError("no matured leads to compute close rates on")
    snapshot = signals.snapshots()
    by_snapshot = close_rate_by_snapshot(closed, snapshot)
    first = first_shown(signals.matrix.to_numpy() > 0, signals.lead, len(by_snapshot))
    leads = first.sum(axis=0, dtype=np.int64)
    customers = first[closed == 1].sum(axis=0, dtype=np.int64)
    average = by_snapshot[min(by_snapshot)]
    expected_customers = sum(first[snapshot == s].sum(axis=0, dtype=np.int64) * rate for s, rate in by_snapshot.items())
    with np.errstate(divide="ignore", invalid="ignore"):
        close_rate = np.where(leads > 0, customers / np.maximum(leads, 1), 0.0)
        expected = np.where(leads > 0, expected_customers / np.maximum(leads, 1), average)
        scale = np.where(expected > 0, 1.0 / expected, np.nan)
    low, high = wilson_interval(customers, leads, confidence)
    table = signals.catalog.copy()
    table["leads"] = leads
    table["customers"] = customers
    table["close_rate"] = close_rate
    table["ci_low"] = low
    table["ci_high"] = high
    table["expected_close_rate"] = expected
    table["lift"] = close_rate * scale
    table["lift_ci_low"] = low * scale
    table["lift_ci_high"] = high * scale
    strength = beta_binomial_strength(customers, leads, expected)
    table["shrunk_close_rate"] = shrink_close_rate(customers, leads, expected, strength)
    table["shrunk_lift"] = table["shrunk_close_rate"] * scale
    table["low_support"] = leads < min_support
    table = table[COLUMNS]
    table.attrs["prior_strength"] = strength
    table.attrs["close_rate_by_snapshot"] = by_snapshot
    return table, average


def discover_frequency(features: pd.DataFrame, params: Params) -> list[FoundThreshold]:
    """Frequency thresholds found on the training cohorts (never on the held-out ones).

    Searched on one snapshot's rows (`estimation_snapshot`: the last one, day 30, unless it
    holds too few customers): one row per lead (independent units for the G-test), each with
    its whole window of activity.
    """
    settings = params.signals.frequency
    if not settings.discover:
        return []
    train = time_split(features, params.train.validation_months, params.outcome.horizon_days)[0].to_numpy()
    snapshot = features["snapshot_days"].to_numpy()
    at = estimation_snapshot(snapshot[train], features["closed"].to_numpy()[train], params.signals.min_support)
    rows = train & (snapshot == at)
    peaks = [c for c in features.columns if c.startswith(PEAK_PREFIX)]  # only these are read: no copy of the rest
    found = discover(
        features.loc[rows, peaks], features.loc[rows, "closed"].to_numpy(), activities_in(features),
        settings.windows_days, params.signals.min_support, settings.max_p_value,
    )
    for f in found:
        log.info("close_rates: found %s %d+ in %d days (close rate %.1f %% vs %.1f %% below, p = %.1e)",
                 f.activity, f.min_count, f.window_days, 100 * f.close_rate_at_or_above, 100 * f.close_rate_below, f.p_value)
    return found


def run(params: Params) -> dict[str, object]:
    """features.parquet -> models/signals.json (frequency thresholds found) and models/close_rates.csv."""
    features = io.read_parquet(params.paths.features / FEATURES)
    known = labelled(features).to_numpy()
    found = discover_frequency(features, params)
    fixed = {(spec.activity, spec.window_days) for spec in params.signals.frequency.fixed}
    found = [f for f in found if (f.activity, f.window_days) not in fixed]  # a fixed signal wins
    frequency = [*params.signals.frequency.fixed,
                 *(FrequencySignal(activity=f.activity, min_count=f.min_count, window_days=f.window_days) for f in found)]
    signals = build_signals(features, params.signals, frequency)
    table, average = close_rate_table(
        signals.take(known), features.loc[known, "closed"].to_numpy(), params.close_rates.confidence,
        params.signals.min_support,
    )
    first = known & (features["snapshot_days"] == params.outcome.snapshot_days[0]).to_numpy()  # one row per lead
    if average == 0:
        raise LeadcalError(
            f"{params.paths.features / FEATURES}: none of the {int(first.sum())} matured leads became a "
            f"customer within {params.outcome.horizon_days} days: close rates and lifts are undefined. "
            f"Still available: the validated tables ({params.paths.extracted}) and each lead's signals "
            f"({params.paths.features / FEATURES}); `leadcal funnel` still measures the funnel"
        )
    models = params.paths.models
    io.write_json(models / SIGNALS, {
        "frequency": [
            *({**spec.model_dump(), "source": "params"} for spec in params.signals.frequency.fixed),
            *({**f.as_dict(), "source": "discovered"} for f in found),
        ],
        "recency_days": params.signals.recency_days,
    })
    spreadsheet.write_csv(models / CLOSE_RATES, table)  # for people: formula-like names escaped
    metrics = {
        "average_close_rate": average,
        "matured_leads": int(first.sum()),
        "customers": int(features.loc[first, "closed"].sum()),
        # the number a CRM report shows ("customers / leads", no time limit), beside the
        # horizon's: a marketer comparing the two sees how many deals take longer
        "close_rate_any_time": float(features.loc[first, "customer_at"].notna().mean()),
        # of the leads still open at each snapshot, the share that closed: the expected close rates
        "close_rate_by_snapshot": {str(k): v for k, v in table.attrs["close_rate_by_snapshot"].items()},
        "signals": int(len(table)),
        "signals_low_support": int(table["low_support"].sum()),
        "shrinkage_prior_strength": table.attrs["prior_strength"],
        # what the features stage flagged as too good to be true, for the notebooks and the run's reader
        "leakage_screen": io.read_json(params.paths.features / "features_report.json").get("leakage_screen"),
    }
    io.write_json(models / "metrics" / "close_rates.json", metrics)
    log.info("close_rates: %d signals, average close rate %.2f %%", len(table), 100 * average)
    return metrics
