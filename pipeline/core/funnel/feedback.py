"""Rejected MQLs: which signals produce MQLs that sales rejects, as feedback to marketing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.funnel.common import LOST, RANK, check_confidence, check_stages
from pipeline.core.signals import lead_starts
from pipeline.core.stats import wilson_interval


def mql_outcomes(stages: pd.DataFrame, lead_ids: Sequence[str] | pd.Index) -> pd.DataFrame:
    """Per lead (index = lead_ids, in order): `mql` (reached mql) and `rejected`.

    Rejected by sales = reached mql, then `lost` (at or after its first stage from mql on),
    without ever reaching sql. A lead lost before it became an MQL is not a rejected MQL.
    """
    check_stages(stages)
    ids = pd.Index(lead_ids)
    rows = stages.loc[stages["lead_id"].isin(ids), ["lead_id", "stage", "entered_at"]]
    rank = rows["stage"].map(RANK)
    furthest = rank.groupby(rows["lead_id"]).max().reindex(ids).fillna(0).to_numpy()
    from_mql = rows[rank.to_numpy() >= RANK["mql"]]
    mql_at = from_mql.groupby("lead_id")["entered_at"].min().reindex(ids)
    lost_rows = rows[rows["stage"] == LOST]
    lost_rows = lost_rows[lost_rows["entered_at"].to_numpy() >= mql_at.reindex(lost_rows["lead_id"]).to_numpy()]
    mql = furthest >= RANK["mql"]
    rejected = mql & (furthest < RANK["sql"]) & ids.isin(lost_rows["lead_id"])
    return pd.DataFrame({"mql": mql, "rejected": rejected}, index=ids)


def rows_at_mql(features: pd.DataFrame, stages: pd.DataFrame) -> np.ndarray:
    """Per matured lead, the position of its row as marketing knew it when the lead became an MQL.

    Its latest snapshot at or before the MQL (reached mql or any later stage): what sales was
    handed. Not its last row: a lead sales rejects is soon lost and seen early, one it accepts
    stays open and would be seen with the meetings that followed. A lead that never became an
    MQL is taken at its first snapshot (it counts in no rejection rate).
    """
    from_mql = stages.loc[stages["stage"].map(RANK).fillna(-1).to_numpy() >= RANK["mql"]]
    mql_at = features["lead_id"].map(from_mql.groupby("lead_id")["entered_at"].min())
    known = (features["closed"] >= 0).to_numpy()
    before = (features["cutoff_at"] <= mql_at).to_numpy()  # False where no MQL
    starts = lead_starts(features["lead_id"].to_numpy())
    latest_before = np.maximum.reduceat(np.where(before, np.arange(len(features)), -1), starts) if len(starts) else starts
    picked = np.where(latest_before >= 0, latest_before, starts)
    return picked[known[picked]]


def _with_catalog(table: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """The table with the catalog's description of each signal (kind, type, attribute, value)
    right after its name, so a reader sees what a signal is before its rates."""
    if "signal" not in catalog.columns:
        raise ValueError(f"catalog: missing column 'signal'; found {list(catalog.columns)}")
    extra = [c for c in catalog.columns if c != "signal" and c not in table.columns]
    table = table.merge(catalog[["signal", *extra]].drop_duplicates("signal"), on="signal", how="left")
    return table[["signal", *extra, *(c for c in table.columns if c not in extra and c != "signal")]]


def rejection_feedback(
    stages: pd.DataFrame, signal_matrix: pd.DataFrame, catalog: pd.DataFrame | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Which signals produce MQLs that sales rejects (see `mql_outcomes`).

    signal_matrix: 0/1 (or bool) leads x signals, **indexed by lead_id** (build_signals'
    matrix with `.index = features['lead_id']`); its rows are the population, so pass
    matured leads only if recent MQLs (not yet judged) should not count as accepted.
    catalog: optional, one row per signal (column `signal`); its other columns (kind,
    type, attribute, value) are copied into the table.

    Returns {"overall": {mqls, rejected, rate, low, high},
             "signals": DataFrame(signal, [catalog columns], mqls, rejected, rejection_rate,
                                  low, high, relative, relative_low, relative_high, share_of_rejected)}
    relative = rejection_rate / overall rate (2 = rejected twice as often as the average MQL);
    share_of_rejected = the part of all rejected MQLs that had the signal. Sorted by the
    interval's lower bound, highest first (signals whose MQLs are surely often rejected
    come first; a signal seen in two MQLs does not top the list on luck), then by
    rejected MQLs; signals no MQL had come last with NaN rates.
    """
    confidence = check_confidence(confidence)
    if signal_matrix.index.has_duplicates:
        raise ValueError("signal_matrix: the index must be unique lead ids")
    values = signal_matrix.to_numpy()
    if values.size and not np.isin(values, (0, 1)).all():
        raise ValueError("signal_matrix: expected 0/1 values")
    outcomes = mql_outcomes(stages, signal_matrix.index)
    mql = outcomes["mql"].to_numpy()
    rejected = outcomes["rejected"].to_numpy()
    matrix = values.astype(np.int64)
    n = matrix[mql].sum(axis=0)
    k = matrix[rejected].sum(axis=0)
    total, total_rejected = int(mql.sum()), int(rejected.sum())
    overall_rate = total_rejected / total if total else float("nan")
    low, high = wilson_interval(k, n, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        low = np.where(n > 0, low, np.nan)
        high = np.where(n > 0, high, np.nan)
        scale = 1.0 / overall_rate if overall_rate and np.isfinite(overall_rate) else np.nan
        share = k / total_rejected if total_rejected else np.full(len(k), np.nan)
    table = pd.DataFrame({
        "signal": signal_matrix.columns.astype(str), "mqls": n, "rejected": k, "rejection_rate": rate,
        "low": low, "high": high, "relative": rate * scale, "relative_low": low * scale,
        "relative_high": high * scale, "share_of_rejected": share,
    })
    if catalog is not None:
        table = _with_catalog(table, catalog)
    table = table.sort_values(["low", "rejected", "signal"], ascending=[False, False, True], na_position="last",
                              kind="stable").reset_index(drop=True)
    overall_low, overall_high = wilson_interval(np.array([total_rejected]), np.array([total]), confidence)
    return {
        "overall": {"mqls": total, "rejected": total_rejected, "rate": overall_rate,
                    "low": float(overall_low[0]), "high": float(overall_high[0])},
        "signals": table,
    }
