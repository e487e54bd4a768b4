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

from pipeline.core.signals import (
    CATALOG_COLUMNS,
    SignalSet,
    build_signals,
    first_shown,
    frequency_signals,
    labelled,
    merged_catalog,
)
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

    def with_frequency(self, extra: SignalCounts) -> SignalCounts:
        """These counts and `extra`'s (frequency signals counted over the same rows), the extra
        signals after this catalog's activity and frequency ones: `build_signals`' order, as if
        every signal had been counted at once (each signal's counts depend on its column alone)."""
        if not np.array_equal(self.snapshots, extra.snapshots) or not np.array_equal(self.rows, extra.rows):
            raise ValueError("the counts to join were not taken over the same rows")
        kinds = self.catalog["type"].to_numpy()
        at = int(np.isin(kinds, ("activity", "frequency")).sum())
        if np.isin(kinds[:at], ("activity", "frequency")).sum() != at:
            raise ValueError("the catalog does not begin with its activity and frequency signals")
        joined = {name: np.concatenate([getattr(self, name)[:, :at], getattr(extra, name), getattr(self, name)[:, at:]],
                                       axis=1) for name in _PER_SIGNAL}
        catalog = pd.concat([self.catalog.iloc[:at], extra.catalog, self.catalog.iloc[at:]], ignore_index=True)
        return SignalCounts(catalog=catalog, snapshots=self.snapshots, rows=self.rows, customers=self.customers,
                            **joined)

    def as_dict(self) -> dict[str, object]:
        """Plain lists, for a JSON artifact (`from_dict` reads it back exactly: every count is an integer)."""
        return {"catalog": self.catalog.to_dict("list"), "snapshots": self.snapshots.tolist(),
                "rows": self.rows.tolist(), "customers": self.customers.tolist(),
                **{name: getattr(self, name).tolist() for name in _PER_SIGNAL}}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SignalCounts:
        signals = len(data["catalog"]["signal"])
        ages = len(data["snapshots"])
        return cls(catalog=pd.DataFrame(data["catalog"], columns=list(CATALOG_COLUMNS)),
                   snapshots=np.asarray(data["snapshots"], dtype=np.int64),
                   rows=np.asarray(data["rows"], dtype=np.int64), customers=np.asarray(data["customers"], dtype=np.int64),
                   **{name: np.asarray(data[name], dtype=np.int64).reshape(ages, signals) for name in _PER_SIGNAL})


_PER_SIGNAL = ("first", "first_customers", "present_won", "present_lost")


def count_signals(signals: SignalSet, closed: np.ndarray) -> SignalCounts:
    """The counts of `signals`' rows (labelled ones only: `closed` is 1 for a customer, else 0)."""
    closed = np.asarray(closed, dtype=np.int64) == 1
    ages, age = np.unique(signals.snapshots(), return_inverse=True)
    present = signals.matrix.to_numpy() > 0
    first = first_shown(present, signals.lead, len(ages) or 1)
    group = age.reshape(-1) * 2 + closed  # (age, customer or not): the counts are sums over these groups
    rows = np.bincount(group, minlength=2 * len(ages)).reshape(-1, 2)
    shape = (len(ages), 2, present.shape[1])
    first_by = group_sums(first, group, 2 * len(ages)).reshape(shape)
    present_by = group_sums(present, group, 2 * len(ages)).reshape(shape)
    return SignalCounts(catalog=signals.catalog.reset_index(drop=True), snapshots=ages.astype(np.int64),
                        rows=rows.sum(axis=1), customers=rows[:, 1], first=first_by.sum(axis=1),
                        first_customers=first_by[:, 1], present_won=present_by[:, 1], present_lost=present_by[:, 0])


def group_sums(flags: np.ndarray, group: np.ndarray, groups: int, block_rows: int = 1 << 16) -> np.ndarray:
    """groups x columns: per group of rows, the column sums of the 0/1 matrix `flags` (rows x columns).

    One matrix product per block of rows with the groups' one-hot matrix, in float32: a
    masked copy of the matrix per group and a sum cost three times as much. Exact: every
    partial sum is a whole number below 2**24 (a block has fewer rows), which float32 holds
    exactly, and the blocks are added as integers. Blocks of 65,536 rows keep the float copy
    small (16 MB at 60 signals) and were faster than larger ones."""
    if not 0 < block_rows < 1 << 24:
        raise ValueError(f"block_rows = {block_rows}: float32 counts are exact below 2**24 rows")
    sums = np.zeros((groups, flags.shape[1]), dtype=np.int64)
    for start in range(0, len(flags), block_rows):
        block = flags[start:start + block_rows]
        one_hot = np.zeros((groups, len(block)), dtype=np.float32)
        one_hot[group[start:start + block_rows], np.arange(len(block))] = 1
        sums += (one_hot @ block.astype(np.float32)).astype(np.int64)
    return sums


def count_labelled(features: pd.DataFrame, settings: Signals) -> SignalCounts:
    """The counts of the signals params define (pipeline.core.signals.build_signals: activities,
    fixed frequency signals, recency, fit values) over a features table's labelled rows: what
    the features stage adds up part by part, for the leakage screen and close rates."""
    known = labelled(features).to_numpy()
    return count_signals(build_signals(features, settings).take(known), features.loc[known, "closed"].to_numpy())


def settings_fingerprint(settings: Signals) -> str:
    """A digest of the `signals` settings counts were taken with (their canonical JSON): saved beside
    the counts and compared whole, without JSON's float rounding."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(settings.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def count_frequency(features: pd.DataFrame, frequency: list[FrequencySignal]) -> SignalCounts:
    """`count_labelled` of the frequency signals `frequency` alone (pipeline.core.signals.frequency_signals)."""
    known = labelled(features).to_numpy()
    return count_signals(frequency_signals(features, frequency).take(known), features.loc[known, "closed"].to_numpy())


def customers_any_time(features: pd.DataFrame, first_snapshot: int) -> int:
    """Matured leads that became customers at any time, not only within the horizon (the close rate
    a CRM report shows): one row per lead at the first snapshot, with a customer stage."""
    first = labelled(features).to_numpy() & (features["snapshot_days"] == first_snapshot).to_numpy()
    return int((first & features["customer_at"].notna().to_numpy()).sum())


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
