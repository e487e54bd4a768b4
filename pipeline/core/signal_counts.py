"""What every signal statistic needs, as counts that add up over leads.

A close rate, its expected rate, the leakage screen's close rate and single-signal AUC:
each is a ratio of counts of labelled rows, per snapshot. Counted over disjoint sets of
leads (the chunks of a table too large to hold at once, a Spark partition), the counts add
up to those of the whole table, exactly: integers, no float summed in another order. So a
stage can stream features.parquet lead range by lead range and publish the numbers it would
have computed on the whole table at once, byte for byte.

Counted per snapshot age (rows of a lead are consecutive and at distinct ages):
- rows, customers: labelled rows seen at that age, and those of leads that became customers;
- first, first_customers: leads whose first row showing the signal is at that age (a lead
  counts once per signal: pipeline.core.signals.first_shown), and of those the customers;
- present_won, present_lost: rows showing the signal among the customers' rows and the
  others' (the single-signal AUC compares rows of the same age).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.core.signals import SignalSet, build_signals, first_shown, labelled, merged_catalog
from pipeline.params import FrequencySignal, Signals


@dataclass(frozen=True)
class SignalCounts:
    """Counts over labelled rows: `snapshots` (k ages, ascending) x the signals of `catalog`.

    rows, customers: (k,); first, first_customers, present_won, present_lost: (k, signals).
    Only ages with at least one labelled row appear.
    """

    catalog: pd.DataFrame
    snapshots: np.ndarray
    rows: np.ndarray
    customers: np.ndarray
    first: np.ndarray
    first_customers: np.ndarray
    present_won: np.ndarray
    present_lost: np.ndarray

    def close_rate_by_snapshot(self) -> dict[int, float]:
        """Close rate of the labelled rows at each age: of the leads still open then, how many closed."""
        return {int(s): float(self.customers[k] / self.rows[k]) for k, s in enumerate(self.snapshots)}

    def leads(self) -> np.ndarray:
        """Per signal, the leads that showed it at one of their rows."""
        return self.first.sum(axis=0, dtype=np.int64)

    def leads_customers(self) -> np.ndarray:
        """Per signal, the customers among `leads`."""
        return self.first_customers.sum(axis=0, dtype=np.int64)

    def rows_at(self, snapshot: int) -> tuple[int, int]:
        """(labelled rows, customers) at one age; (0, 0) if none was seen there."""
        k = np.flatnonzero(self.snapshots == snapshot)
        return (int(self.rows[k[0]]), int(self.customers[k[0]])) if len(k) else (0, 0)


_PER_SIGNAL = ("first", "first_customers", "present_won", "present_lost")


def count_signals(signals: SignalSet, closed: np.ndarray) -> SignalCounts:
    """The counts of `signals`' rows (labelled ones only: `closed` is 1 for a customer, else 0)."""
    closed = np.asarray(closed, dtype=np.int64) == 1
    snapshot = signals.snapshots()
    present = signals.matrix.to_numpy() > 0
    ages = np.unique(snapshot)
    first = first_shown(present, signals.lead, len(ages) or 1)
    per_signal = {name: np.zeros((len(ages), present.shape[1]), dtype=np.int64) for name in _PER_SIGNAL}
    rows, customers = np.zeros(len(ages), dtype=np.int64), np.zeros(len(ages), dtype=np.int64)
    for k, age in enumerate(ages):
        at = snapshot == age
        won, lost = at & closed, at & ~closed
        rows[k], customers[k] = int(at.sum()), int(won.sum())
        per_signal["first"][k] = first[at].sum(axis=0, dtype=np.int64)
        per_signal["first_customers"][k] = first[won].sum(axis=0, dtype=np.int64)
        per_signal["present_won"][k] = present[won].sum(axis=0, dtype=np.int64)
        per_signal["present_lost"][k] = present[lost].sum(axis=0, dtype=np.int64)
    return SignalCounts(catalog=signals.catalog.reset_index(drop=True), snapshots=ages.astype(np.int64), rows=rows,
                        customers=customers, **per_signal)


def count_labelled(features: pd.DataFrame, settings: Signals, frequency: list[FrequencySignal] | None = None) -> SignalCounts:
    """The counts of the signals (pipeline.core.signals.build_signals) over a features table's
    labelled rows: what close rates and the leakage screen add up part by part."""
    known = labelled(features).to_numpy()
    return count_signals(build_signals(features, settings, frequency).take(known), features.loc[known, "closed"].to_numpy())


def add_counts(parts: list[SignalCounts], fit_attributes: list[str], numeric_bins: dict[str, list[float]]) -> SignalCounts:
    """The counts of the union of disjoint sets of leads, each counted on its own.

    The catalog is the one `build_signals` gives the whole table (pipeline.core.signals.merged_catalog):
    a fit value seen in one part only is a signal of the whole, with zero counts elsewhere.
    """
    if not parts:
        raise ValueError("no counts to add")
    catalog = merged_catalog([p.catalog for p in parts], fit_attributes, numeric_bins)
    position = pd.Index(catalog["signal"])
    ages = np.unique(np.concatenate([p.snapshots for p in parts]))
    rows, customers = np.zeros(len(ages), dtype=np.int64), np.zeros(len(ages), dtype=np.int64)
    per_signal = {name: np.zeros((len(ages), len(catalog)), dtype=np.int64) for name in _PER_SIGNAL}
    for part in parts:
        at = np.searchsorted(ages, part.snapshots)
        columns = position.get_indexer(part.catalog["signal"])
        rows[at] += part.rows
        customers[at] += part.customers
        for name in _PER_SIGNAL:
            per_signal[name][np.ix_(at, columns)] += getattr(part, name)
    return SignalCounts(catalog=catalog, snapshots=ages, rows=rows, customers=customers, **per_signal)
