"""How fast the funnel moves: sales follow-up of MQLs against the SLAs, days between stages and the
sales cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.funnel.common import (
    DAY,
    FUNNEL,
    HOUR,
    LOST,
    RANK,
    UNKNOWN,
    check_confidence,
    check_leads,
    check_stages,
)
from pipeline.core.stats import wilson_interval
from pipeline.data.contract import WON_STAGE


def quantiles(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(np.median(values)), float(np.quantile(values, 0.9))


def share_interval(k: int, n: int, confidence: float) -> dict[str, float]:
    low, high = wilson_interval(np.array([k]), np.array([n]), confidence)
    return {"share": k / n if n else float("nan"), "low": float(low[0]), "high": float(high[0])}


def sla_follow_up(
    stages: pd.DataFrame, sla_hours: Sequence[float] = (24, 48), as_of: Any = None,
    confidence: float = 0.95, lost_is_follow_up: bool = True,
) -> dict[str, Any]:
    """How sales follows up MQLs: accepted, followed up, how fast, and within each SLA.

    MQLs are the leads with an `mql` row (a lead that skipped mql has no time to measure
    from). The *next stage* is the earliest sal / sql / opportunity / customer row (and
    `lost` when `lost_is_follow_up`: a rejection is a response too) entered at or after
    the mql. Accepted = reached sal or later.

    MQLs younger than the longest SLA at `as_of` (default: the latest `entered_at`) are
    not yet due and are left out of every share (`mqls_not_yet_due`). Shares within an SLA
    count un-followed MQLs as misses. Hours are median and 90th percentile of the
    followed-up ones.
    """
    confidence = check_confidence(confidence)
    hours = list(sla_hours)
    if not hours or any(not isinstance(h, (int, float)) or isinstance(h, bool) or not h > 0 for h in hours):
        raise ValueError(f"sla_hours: need one or more positive numbers of hours, got {sla_hours!r}")
    check_stages(stages)
    as_of = pd.Timestamp(as_of) if as_of is not None else stages["entered_at"].max()
    mql_at = stages.loc[stages["stage"] == "mql"].groupby("lead_id")["entered_at"].min()
    due = mql_at[mql_at + pd.Timedelta(hours=max(hours)) <= as_of]
    after = [s for s in FUNNEL if RANK[s] > RANK["mql"]] + ([LOST] if lost_is_follow_up else [])
    later = stages.loc[stages["stage"].isin(after) & stages["lead_id"].isin(due.index), ["lead_id", "stage", "entered_at"]]
    later = later[later["entered_at"].to_numpy() >= due.reindex(later["lead_id"]).to_numpy()]
    later = later.assign(_rank=later["stage"].map(lambda s: RANK.get(s, len(FUNNEL))))
    nxt = later.sort_values(["lead_id", "entered_at", "_rank"], kind="stable").groupby("lead_id").first()
    waited = ((nxt["entered_at"] - due.reindex(nxt.index)) / HOUR).to_numpy(dtype=float)
    accepted_ids = stages.loc[stages["stage"].isin([s for s in FUNNEL if RANK[s] >= RANK["sal"]]), "lead_id"]
    n = len(due)
    accepted = int(due.index.isin(accepted_ids).sum())
    median, p90 = quantiles(waited)
    return {
        "as_of": as_of,
        "mqls": int(len(mql_at)),
        "mqls_not_yet_due": int(len(mql_at) - n),
        "mqls_due": n,
        "accepted": {"mqls": accepted, **share_interval(accepted, n, confidence)},
        "followed_up": {"mqls": int(len(nxt)), **share_interval(len(nxt), n, confidence)},
        "hours_to_next_stage": {"mqls": int(len(nxt)), "median": median, "p90": p90},
        "next_stage": {stage: int(count) for stage, count in nxt["stage"].value_counts().sort_index().items()},
        "within_sla": [
            {"hours": h, "mqls": int(np.sum(waited <= h)), **share_interval(int(np.sum(waited <= h)), n, confidence)}
            for h in sorted(hours)
        ],
    }


def _transitions(rows: pd.DataFrame) -> pd.DataFrame:
    """From per-lead rows in funnel order: one duration per consecutive pair, summarised."""
    ordered = rows.sort_values(["lead_id", "_rank"], kind="stable")
    previous = ordered.groupby("lead_id")[["stage", "entered_at", "_rank"]].shift()
    pairs = ordered.assign(from_stage=previous["stage"], from_at=previous["entered_at"], from_rank=previous["_rank"])
    pairs = pairs[pairs["from_stage"].notna()]
    pairs = pairs.assign(days=(pairs["entered_at"] - pairs["from_at"]) / DAY)
    out = []
    for (frm_rank, to_rank, frm, to), chunk in pairs.groupby(["from_rank", "_rank", "from_stage", "stage"], sort=True):
        days = chunk["days"].to_numpy(dtype=float)
        median, p90 = quantiles(days)
        out.append({"from_stage": frm, "to_stage": to, "leads": len(days), "median_days": median, "p90_days": p90,
                    "negative": int(np.sum(days < 0))})
    return pd.DataFrame(out, columns=["from_stage", "to_stage", "leads", "median_days", "p90_days", "negative"])


def _cycle(rows: pd.DataFrame) -> dict[str, Any]:
    lead = rows[rows["stage"] == FUNNEL[0]].set_index("lead_id")["entered_at"]
    won = rows[rows["stage"] == WON_STAGE].set_index("lead_id")["entered_at"]
    won = won[won.index.isin(lead.index)]
    days = ((won - lead.reindex(won.index)) / DAY).to_numpy(dtype=float)
    median, p90 = quantiles(days)
    return {"customers": int(len(days)), "median_days": median, "p90_days": p90}


def stage_durations(stages: pd.DataFrame, leads: pd.DataFrame | None = None, by: str | None = "source") -> dict[str, Any]:
    """Days between consecutive reached stages, and the sales cycle (creation -> customer).

    Per lead, its funnel rows (not `lost`) in funnel order; each consecutive pair is one
    duration, so a lead that skipped sal adds to `mql -> sql`, not to `mql -> sal`.
    `negative` counts pairs dated in reverse (a data-quality hint). With `leads`, only
    those leads count and the `lead` stage is dated at their `created_at`; without, at
    their `lead` row (leads without one have no sales cycle).

    Pass matured leads only if you want durations unbiased by recent leads, which can
    only show the fast transitions so far.

    by: a column of `stages` or of `leads` (default 'source', skipped when absent;
    another name that is absent is an error) to get the same per group.

    Returns {"transitions": DataFrame(from_stage, to_stage, leads, median_days, p90_days, negative),
             "sales_cycle": {customers, median_days, p90_days},
             "by": None or {"column", "transitions": DataFrame with the group column first,
                            "sales_cycle": DataFrame(group, customers, median_days, p90_days)}}.
    """
    check_stages(stages)
    rows = stages.loc[stages["stage"].isin(FUNNEL)].copy()
    group_of: pd.Series | None = None
    if leads is not None:
        ids = check_leads(leads, need_created=True)
        rows = rows[rows["lead_id"].isin(ids) & (rows["stage"] != FUNNEL[0])]
        created = pd.DataFrame({"lead_id": ids, "stage": FUNNEL[0], "entered_at": leads["created_at"].to_numpy()})
        rows = pd.concat([created, rows[["lead_id", "stage", "entered_at"]]], ignore_index=True)
    if by is not None:
        if by in stages.columns:
            group_of = stages.dropna(subset=[by]).groupby("lead_id")[by].first()
        elif leads is not None and by in leads.columns:
            group_of = pd.Series(leads[by].to_numpy(), index=pd.Index(leads["lead_id"]))
        elif by != "source":
            raise ValueError(f"by={by!r}: not a column of stages or leads")
    rows = rows[["lead_id", "stage", "entered_at"]]
    rows = rows.assign(_rank=rows["stage"].map(RANK))
    result: dict[str, Any] = {"transitions": _transitions(rows), "sales_cycle": _cycle(rows), "by": None}
    if group_of is not None:
        labels = group_of.astype(object).where(group_of.notna(), UNKNOWN).astype(str)
        rows = rows.assign(_group=labels.reindex(rows["lead_id"]).fillna(UNKNOWN).to_numpy())
        transitions, cycles = [], []
        for group, chunk in rows.groupby("_group", sort=True):
            transitions.append(_transitions(chunk).assign(**{by: group}))
            cycles.append({by: group, **_cycle(chunk)})
        result["by"] = {
            "column": by,
            "transitions": pd.concat(transitions, ignore_index=True)[[by, *transitions[0].columns.drop(by)]]
            if transitions else pd.DataFrame(),
            "sales_cycle": pd.DataFrame(cycles, columns=[by, "customers", "median_days", "p90_days"]),
        }
    return result
