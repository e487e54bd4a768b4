"""What every funnel analysis shares: the stage order, input checks, and which stages each lead reached.

A lead *reaches* a stage when it has that stage or any later one in
lead -> mql -> sal -> sql -> opportunity -> customer: CRMs skip stages (a sales-sourced
deal may go straight to opportunity), and a customer has certainly been a lead.
`lost` is not in the order: it says nothing about how far a lead got.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.stats import wilson_interval
from pipeline.data.contract import STAGES, WON_STAGE

LOST = "lost"
FUNNEL: tuple[str, ...] = tuple(s for s in STAGES if s != LOST)  # lead, mql, sal, sql, opportunity, customer
RANK: dict[str, int] = {stage: i for i, stage in enumerate(FUNNEL)}
MONTH = "month"  # `by="month"`: the lead's creation month, YYYY-MM
UNKNOWN = "unknown"  # group of leads whose `by` value is missing
PLAN_CHAIN: tuple[str, ...] = ("lead", "mql", "sql", WON_STAGE)
DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)

FUNNEL_COLUMNS = [
    "stage", "leads", "previous", "rate_from_previous", "rate_from_previous_low", "rate_from_previous_high",
    "base", "rate_from_lead", "rate_from_lead_low", "rate_from_lead_high", "population", "note",
]
COUNT_COLUMNS = ["from_stage", "to_stage", "successes", "trials", "rate", "low", "high", "population"]


def check_stages(stages: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("lead_id", "stage", "entered_at") if c not in stages.columns]
    if missing:
        raise ValueError(f"stages: missing column(s) {missing}; found {list(stages.columns)}")
    unknown = sorted(set(stages["stage"].dropna().unique()) - set(STAGES))
    if unknown:
        raise ValueError(f"stages: unknown stage name(s) {unknown}; expected {list(STAGES)}")
    return stages


def check_leads(leads: pd.DataFrame, need_created: bool = False) -> pd.Index:
    if "lead_id" not in leads.columns:
        raise ValueError(f"leads: missing column 'lead_id'; found {list(leads.columns)}")
    if need_created and "created_at" not in leads.columns:
        raise ValueError(f"leads: missing column 'created_at'; found {list(leads.columns)}")
    ids = pd.Index(leads["lead_id"])
    if ids.has_duplicates:
        raise ValueError(f"leads: duplicate lead_id(s), e.g. {list(ids[ids.duplicated()][:3])}")
    return ids


def as_mask(mask: Any, length: int, name: str) -> np.ndarray:
    values = np.asarray(mask)
    if values.shape != (length,):
        raise ValueError(f"{name}: expected a boolean mask of {length} values (one per lead), got shape {values.shape}")
    if values.dtype != bool:
        raise ValueError(f"{name}: expected booleans, got dtype {values.dtype}")
    return values


def reached_stages(stages: pd.DataFrame, leads: pd.DataFrame, within_days: float | None = None) -> pd.DataFrame:
    """Leads x funnel stages of booleans: did the lead reach the stage (it or any later one)?

    Rows follow `leads` (index = lead_id); stage rows of other leads are ignored. Every
    lead reaches `lead`. With `within_days`, only stages entered within that many days of
    the lead's `created_at` count (inclusive, as `closed` in features: pass
    outcome.horizon_days so `customer` means "closed within the horizon").
    """
    check_stages(stages)
    ids = check_leads(leads, need_created=within_days is not None)
    rows = stages.loc[stages["stage"].isin(FUNNEL) & stages["lead_id"].isin(ids), ["lead_id", "stage", "entered_at"]]
    if within_days is not None:
        created = pd.Series(leads["created_at"].to_numpy(), index=ids)
        deadline = created.reindex(rows["lead_id"]).to_numpy() + pd.Timedelta(days=within_days)
        rows = rows[rows["entered_at"].to_numpy() <= deadline]
    furthest = rows["stage"].map(RANK).groupby(rows["lead_id"]).max()
    furthest = furthest.reindex(ids).fillna(0).to_numpy(dtype=int)
    return pd.DataFrame({stage: furthest >= rank for stage, rank in RANK.items()}, index=ids)


def group_keys(leads: pd.DataFrame, by: str | None) -> np.ndarray:
    """One group label per lead (as text, missing -> 'unknown')."""
    if by is None:
        return np.full(len(leads), "all", dtype=object)
    if by == MONTH:
        if "created_at" not in leads.columns:
            raise ValueError("by='month' needs a 'created_at' column in leads")
        return pd.to_datetime(leads["created_at"]).dt.strftime("%Y-%m").to_numpy(dtype=object)
    if by not in leads.columns:
        raise ValueError(f"by={by!r}: not a column of leads (nor 'month'); columns: {list(leads.columns)}")
    values = leads[by]
    return np.where(values.isna().to_numpy(), UNKNOWN, values.astype(str).to_numpy(dtype=object)).astype(object)


def pair_counts(
    reached: pd.DataFrame, keys: np.ndarray, matured: np.ndarray | None,
    pairs: Sequence[tuple[str, str]], confidence: float,
) -> pd.DataFrame:
    """Per group and pair (from, to): successes (reached `to`), trials (reached `from`), rate, interval.

    A pair into `customer` is counted on matured leads only when `matured` is given.
    """
    counts = reached.astype(np.int64).groupby(keys).sum()
    if matured is not None:
        counts_matured = reached[matured].astype(np.int64).groupby(keys[matured]).sum()
        counts_matured = counts_matured.reindex(counts.index, fill_value=0)
    frames = []
    for order, (frm, to) in enumerate(pairs):
        use_matured = matured is not None and to == WON_STAGE
        source = counts_matured if use_matured else counts
        successes = source[to].to_numpy()
        trials = source[frm].to_numpy()
        low, high = wilson_interval(successes, trials, confidence)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(trials > 0, successes / np.maximum(trials, 1), np.nan)
        frames.append(pd.DataFrame({
            "group": counts.index.to_numpy(), "order": order, "from_stage": frm, "to_stage": to,
            "successes": successes, "trials": trials, "rate": rate, "low": low, "high": high,
            "population": "matured" if use_matured else "all",
        }))
    return pd.concat(frames, ignore_index=True).sort_values(["group", "order"], kind="stable").reset_index(drop=True)


def with_group(table: pd.DataFrame, by: str | None) -> pd.DataFrame:
    if by is None:
        return table.drop(columns=["group"]).reset_index(drop=True)
    return table.rename(columns={"group": by}).reset_index(drop=True)


def check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    return float(confidence)
