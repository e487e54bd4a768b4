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
from collections.abc import Callable
from functools import partial, reduce
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from pipeline import io, spreadsheet
from pipeline.artifacts import CLOSE_RATES, FEATURES, SIGNAL_COUNTS, SIGNALS
from pipeline.core.frequency import FoundThreshold, add_peak_counts, count_peaks, discover
from pipeline.core.signal_counts import SignalCounts, add_counts, count_frequency, settings_fingerprint
from pipeline.core.signals import SplitRule, activities_in, estimation_snapshot, split_rule
from pipeline.core.stats import beta_binomial_strength, shrink_close_rate, wilson_interval
from pipeline.data.engine import spark_session
from pipeline.design import FOLD_COLUMN
from pipeline.errors import LeadcalError
from pipeline.params import FrequencySignal, Params
from pipeline.schema import peak_column

log = logging.getLogger(__name__)
Counted = TypeVar("Counted")

CHUNK_ROWS = 100_000  # rows of features.parquet counted at a time: ~0.6 GiB peak at any length, and faster than larger parts
SPLIT_COLUMNS = ("closed", "cohort", "created_at", "snapshot_days", FOLD_COLUMN)  # what split_rule reads, held whole

COLUMNS = [
    "signal", "kind", "type", "attribute", "value", "leads", "customers", "close_rate", "ci_low", "ci_high",
    "expected_close_rate", "lift", "lift_ci_low", "lift_ci_high", "shrunk_close_rate", "shrunk_lift", "low_support",
]


def close_rate_table(counts: SignalCounts, confidence: float = 0.95, min_support: int = 30) -> tuple[pd.DataFrame, float]:
    """(table, average close rate) from the signals' counts over matured rows (pipeline.core.signal_counts).

    Each signal counts a lead once, at its first row showing the signal; `expected_close_rate`
    is the mean, over those leads, of the close rate of every row at that row's snapshot
    (`SignalCounts.close_rate_by_snapshot`), and lift = close rate / expected. The average close
    rate is that of the first snapshot, where every lead is seen once.

    The lift interval divides the signal's interval by the expected rate, treating it (estimated
    from every lead) as known; with thousands of leads its own uncertainty is small next to that
    of a single signal. `shrunk_close_rate` is the empirical-Bayes estimate
    (pipeline.core.stats.shrink_close_rate): rare signals are pulled towards their expected rate,
    common ones keep their own. The prior strength is in `table.attrs["prior_strength"]`.
    """
    if int(counts.rows.sum()) == 0:
        raise ValueError("no matured leads to compute close rates on")
    by_snapshot = counts.close_rate_by_snapshot()
    leads, customers = counts.leads(), counts.leads_customers()
    average = by_snapshot[min(by_snapshot)]
    expected_customers = sum(counts.first[k] * rate for k, rate in enumerate(by_snapshot.values()))
    with np.errstate(divide="ignore", invalid="ignore"):
        close_rate = np.where(leads > 0, customers / np.maximum(leads, 1), 0.0)
        expected = np.where(leads > 0, expected_customers / np.maximum(leads, 1), average)
        scale = np.where(expected > 0, 1.0 / expected, np.nan)
    low, high = wilson_interval(customers, leads, confidence)
    table = counts.catalog.copy()
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


def discover_frequency(path: Path, split: pd.DataFrame, rule: SplitRule, activities: list[str],
                       params: Params) -> list[FoundThreshold]:
    """Frequency thresholds found on the training cohorts (never on the held-out ones).

    Searched on one snapshot's rows (`estimation_snapshot`: the last one, day 30, unless it
    holds too few customers): one row per lead (independent units for the G-test), each with
    its whole window of activity. `split`: the table's split columns; `rule`: its training rows.
    The peak columns are counted part by part (`count_parts`).
    """
    settings = params.signals.frequency
    if not settings.discover:
        return []
    train = rule.masks(split)[0].to_numpy()
    at = estimation_snapshot(split["snapshot_days"].to_numpy()[train], split["closed"].to_numpy()[train],
                             params.signals.min_support)
    peaks = [peak_column(a, w) for w in settings.windows_days for a in activities]
    counted = count_parts(path, [*split.columns, *peaks],
                          partial(_peak_counts, rule=rule, at=at, activities=activities, windows_days=settings.windows_days),
                          params)
    counts = {key: reduce(add_peak_counts, (part[key] for part in counted)) for key in counted[0]}
    found = discover(counts, activities, settings.windows_days, params.signals.min_support, settings.max_p_value)
    for f in found:
        log.info("close_rates: found %s %d+ in %d days (close rate %.1f %% vs %.1f %% below, p = %.1e)",
                 f.activity, f.min_count, f.window_days, 100 * f.close_rate_at_or_above, 100 * f.close_rate_below, f.p_value)
    return found


def _peak_counts(part: pd.DataFrame, rule: SplitRule, at: int, activities: list[str],
                 windows_days: list[int]) -> dict[tuple[str, int], np.ndarray]:
    """The peak counts (pipeline.core.frequency.count_peaks) of one part's training rows at snapshot `at`."""
    rows = rule.masks(part)[0].to_numpy() & (part["snapshot_days"].to_numpy() == at)
    return count_peaks(part.loc[rows], part["closed"].to_numpy()[rows], activities, windows_days)


def count_table(params: Params, discovered: list[FrequencySignal]) -> tuple[SignalCounts, int]:
    """(the signals' counts over the matured rows, matured leads that became customers at any time).

    Every signal params define was counted by the features stage, part by part as it wrote the
    table (SIGNAL_COUNTS); only the `discovered` frequency signals are counted here, from their
    peak columns (`count_parts`), and joined in `build_signals`' order."""
    saved = params.paths.features / SIGNAL_COUNTS
    if not saved.exists():
        raise LeadcalError(f"{saved}: not found (run `leadcal features` first: it counts the signals)")
    data = io.read_json(saved)
    if data.get("settings") != settings_fingerprint(params.signals):
        raise LeadcalError(f"{saved}: counted with other `signals` settings than params' (changed since the "
                           "features stage ran): run `leadcal features` again (dvc repro does)")
    counts = SignalCounts.from_dict(data["signals"])
    if discovered:
        path = params.paths.features / FEATURES
        wanted = ["lead_id", "snapshot_days", "closed", *dict.fromkeys(peak_column(spec.activity, spec.window_days)
                                                                        for spec in discovered)]
        counted = count_parts(path, wanted, partial(count_frequency, frequency=discovered), params)
        extra = add_counts(counted, params.signals.fit_attributes, params.signals.numeric_bins)
        counts = counts.with_frequency(extra)
    return counts, int(data["customers_any_time"])


def count_parts(path: Path, columns: list[str], count: Callable[[pd.DataFrame], Counted], params: Params) -> list[Counted]:
    """`count` of each part of features.parquet (whole leads, about CHUNK_ROWS rows): read here
    part by part, or under `engine: spark` run on Spark's executors (pipeline.data.parts_spark),
    where the table lies; only the counts come back."""
    if params.engine == "spark":
        from pipeline.data.parts_spark import count_by_lead

        return count_by_lead(spark_session(params.spark.master, params.spark.config), path, columns, count, CHUNK_ROWS)
    return [count(part) for part in io.read_parquet_by_lead(path, columns, CHUNK_ROWS)]


def run(params: Params) -> dict[str, object]:
    """features.parquet -> models/signals.json (frequency thresholds found) and models/close_rates.csv.

    The signals params define were counted by the features stage (SIGNAL_COUNTS); the table is
    read for the frequency search and the signals it finds, part by part (`count_parts`: here, or
    on Spark's executors): only its split columns are held whole, so a table of tens of millions
    of rows fits in a small machine's memory."""
    path = params.paths.features / FEATURES
    columns = io.parquet_columns(path)
    split = io.read_parquet(path, columns=[c for c in columns if c in SPLIT_COLUMNS], categories=["cohort"])
    rule = split_rule(split, params.train.validation_months, params.outcome.horizon_days)
    found = discover_frequency(path, split, rule, activities_in(columns), params)
    fixed = {(spec.activity, spec.window_days) for spec in params.signals.frequency.fixed}
    found = [f for f in found if (f.activity, f.window_days) not in fixed]  # a fixed signal wins
    counts, any_time = count_table(params, [FrequencySignal(activity=f.activity, min_count=f.min_count,
                                                            window_days=f.window_days) for f in found])
    table, average = close_rate_table(counts, params.close_rates.confidence, params.signals.min_support)
    matured, customers = counts.rows_at(params.outcome.snapshot_days[0])  # one row per lead
    if average == 0:
        raise LeadcalError(
            f"{path}: none of the {matured} matured leads became a "
            f"customer within {params.outcome.horizon_days} days: close rates and lifts are undefined. "
            f"Still available: the validated tables ({params.paths.extracted}) and each lead's signals "
            f"({path}); `leadcal funnel` still measures the funnel"
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
        "matured_leads": matured,
        "customers": customers,
        # the number a CRM report shows ("customers / leads", no time limit), beside the
        # horizon's: a marketer comparing the two sees how many deals take longer
        "close_rate_any_time": any_time / matured,
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
