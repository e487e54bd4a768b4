"""The funnel itself: how many leads reach each stage, how fast, and what it takes to win.

Everything here reads the canonical `stages` table (lead_id, stage, entered_at, amount;
docs/data-contract.md) and the leads / features table, and answers the questions a
revenue team asks next to a lead score:

- `funnel_conversion`: leads reaching each stage and the conversion rates, with Wilson
  intervals, overall or per source / creation month;
- `conversion_counts`: successes and trials for any chain of stages (lead -> mql -> sql
  -> customer), the input of `plan_volume`;
- `sla_follow_up`: how fast sales picks up MQLs, and how many it accepts;
- `stage_durations`: days between stages and the sales cycle;
- `mql_outcomes` / `rejection_feedback`: which signals produce MQLs that sales rejects;
- `plan_volume`: how many SQLs, MQLs and leads it takes to win N customers, with an
  interval from the uncertainty of the measured rates.

A lead *reaches* a stage when it has that stage or any later one in
lead -> mql -> sal -> sql -> opportunity -> customer: CRMs skip stages (a sales-sourced
deal may go straight to opportunity), and a customer has certainly been a lead.
`lost` is not in the order: it says nothing about how far a lead got.

Every function above `run` is pure (DataFrames in, DataFrames / dicts out, no I/O).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.contract import STAGES, WON_STAGE
from pipeline.design import DATED, SNAPSHOT, SNAPSHOT_NOTE, is_snapshot
from pipeline.errors import LeadcalError
from pipeline.params import Params
from pipeline.signals import band, build_signals, lead_starts, read_frequency_signals
from pipeline.stats import wilson_interval

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------------
# Input checks and the reached-stage matrix
# ---------------------------------------------------------------------------------------------

def _check_stages(stages: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("lead_id", "stage", "entered_at") if c not in stages.columns]
    if missing:
        raise ValueError(f"stages: missing column(s) {missing}; found {list(stages.columns)}")
    unknown = sorted(set(stages["stage"].dropna().unique()) - set(STAGES))
    if unknown:
        raise ValueError(f"stages: unknown stage name(s) {unknown}; expected {list(STAGES)}")
    return stages


def _check_leads(leads: pd.DataFrame, need_created: bool = False) -> pd.Index:
    if "lead_id" not in leads.columns:
        raise ValueError(f"leads: missing column 'lead_id'; found {list(leads.columns)}")
    if need_created and "created_at" not in leads.columns:
        raise ValueError(f"leads: missing column 'created_at'; found {list(leads.columns)}")
    ids = pd.Index(leads["lead_id"])
    if ids.has_duplicates:
        raise ValueError(f"leads: duplicate lead_id(s), e.g. {list(ids[ids.duplicated()][:3])}")
    return ids


def _mask(mask: Any, length: int, name: str) -> np.ndarray:
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
    _check_stages(stages)
    ids = _check_leads(leads, need_created=within_days is not None)
    rows = stages.loc[stages["stage"].isin(FUNNEL) & stages["lead_id"].isin(ids), ["lead_id", "stage", "entered_at"]]
    if within_days is not None:
        created = pd.Series(leads["created_at"].to_numpy(), index=ids)
        deadline = created.reindex(rows["lead_id"]).to_numpy() + pd.Timedelta(days=within_days)
        rows = rows[rows["entered_at"].to_numpy() <= deadline]
    furthest = rows["stage"].map(RANK).groupby(rows["lead_id"]).max()
    furthest = furthest.reindex(ids).fillna(0).to_numpy(dtype=int)
    return pd.DataFrame({stage: furthest >= rank for stage, rank in RANK.items()}, index=ids)


def _group_keys(leads: pd.DataFrame, by: str | None) -> np.ndarray:
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


def _pair_counts(
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


def _with_group(table: pd.DataFrame, by: str | None) -> pd.DataFrame:
    if by is None:
        return table.drop(columns=["group"]).reset_index(drop=True)
    return table.rename(columns={"group": by}).reset_index(drop=True)


def _check_confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    return float(confidence)


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------

def funnel_conversion(
    stages: pd.DataFrame, leads: pd.DataFrame, by: str | None = None, matured: Any = None,
    within_days: float | None = None, confidence: float = 0.95,
) -> pd.DataFrame:
    """Leads reaching each stage of lead -> mql -> sal -> sql -> opportunity -> customer, and the rates.

    Population: every row of `leads` (columns lead_id, created_at and the `by` column);
    stage rows of other leads are ignored.

    Maturity, be explicit about it: a lead created last week has had no time to become a
    customer, so counting it lowers every rate toward `customer`. Either
    - pass `matured` (a boolean mask aligned with the rows of `leads`, e.g.
      features['matured']): the `customer` row (its count, `previous`, `base` and both
      rates) is computed on matured leads only, every other row on all leads; or
    - filter `leads` to matured leads yourself and leave `matured=None`: then every row
      uses the leads given (the whole funnel on one population, rates multiply along it).
    With neither, rates toward customer include leads that may still close.
    `within_days` (e.g. outcome.horizon_days) counts only stages entered within that many
    days of creation, so `customer` matches `closed` in the features table.

    by: None (one funnel), a column of `leads` (e.g. 'source'; missing values are the
    group 'unknown') or 'month' (creation month, YYYY-MM). Groups are sorted.

    One row per (group and) stage, all six stages always present:
      leads        leads that reached the stage (in the row's population)
      previous     leads that reached the previous stage: rate_from_previous = leads / previous
      base         leads at the top: rate_from_lead = leads / base
      *_low/high   Wilson interval at `confidence`; rates are NaN when the denominator is 0
      population   'all' or 'matured' (which leads this row counts)
      note         why a count is 0 or a rate undefined; '' otherwise
    The `lead` row has rates 1 by definition.
    """
    confidence = _check_confidence(confidence)
    ids = _check_leads(leads, need_created=within_days is not None or by == MONTH)
    if len(ids) == 0:
        raise ValueError("leads: no leads, so there is no funnel")
    mask = None if matured is None else _mask(matured, len(ids), "matured")
    reached = reached_stages(stages, leads, within_days)
    keys = _group_keys(leads, by)
    steps = _pair_counts(reached, keys, mask, list(zip(FUNNEL[:-1], FUNNEL[1:])), confidence)
    from_lead = _pair_counts(reached, keys, mask, [(FUNNEL[0], s) for s in FUNNEL[1:]], confidence)
    top = reached.astype(np.int64).groupby(keys)[FUNNEL[0]].sum()
    step_rows = steps.rename(columns={
        "successes": "leads", "trials": "previous", "rate": "rate_from_previous",
        "low": "rate_from_previous_low", "high": "rate_from_previous_high", "to_stage": "stage",
    })
    lead_rows = from_lead.rename(columns={
        "trials": "base", "rate": "rate_from_lead", "low": "rate_from_lead_low", "high": "rate_from_lead_high",
        "to_stage": "stage",
    })[["group", "stage", "base", "rate_from_lead", "rate_from_lead_low", "rate_from_lead_high"]]
    later = step_rows.merge(lead_rows, on=["group", "stage"], how="left", validate="one_to_one")
    first = pd.DataFrame({
        "group": top.index.to_numpy(), "stage": FUNNEL[0], "leads": top.to_numpy(), "previous": top.to_numpy(),
        "rate_from_previous": 1.0, "rate_from_previous_low": 1.0, "rate_from_previous_high": 1.0,
        "base": top.to_numpy(), "rate_from_lead": 1.0, "rate_from_lead_low": 1.0, "rate_from_lead_high": 1.0,
        "population": "all",
    })
    table = pd.concat([first, later[first.columns]], ignore_index=True)
    table["note"] = [_note(row) for row in table.itertuples(index=False)]
    table["_rank"] = table["stage"].map(RANK)
    table = table.sort_values(["group", "_rank"], kind="stable")[["group", *FUNNEL_COLUMNS]]
    return _with_group(table, by)


def _note(row: Any) -> str:
    if row.stage == FUNNEL[0]:
        return ""
    previous = FUNNEL[RANK[row.stage] - 1]
    if row.population == "matured" and row.base == 0:
        return "no matured lead: rates toward customer are not known yet"
    if row.previous == 0:
        return f"no lead reached {previous}: rate undefined"
    if row.leads == 0:
        return "no lead reached this stage"
    return ""


def conversion_counts(
    stages: pd.DataFrame, leads: pd.DataFrame, chain: Sequence[str] = PLAN_CHAIN, by: str | None = None,
    matured: Any = None, within_days: float | None = None, confidence: float = 0.95,
) -> pd.DataFrame:
    """Successes and trials for each step of `chain` (stages in funnel order, e.g. lead, mql, sql, customer).

    A step from A to B: trials = leads that reached A, successes = those that reached B
    (reached as in `funnel_conversion`, skipped stages included). Same population rules
    as `funnel_conversion`: with `matured`, the step into `customer` counts matured leads
    only. Columns: [by], from_stage, to_stage, successes, trials, rate, low, high, population.
    The result (one group) is what `plan_volume` takes.
    """
    confidence = _check_confidence(confidence)
    chain = list(chain)
    unknown = [s for s in chain if s not in RANK]
    if unknown:
        raise ValueError(f"chain: unknown stage(s) {unknown}; the funnel is {list(FUNNEL)}")
    if len(chain) < 2 or any(RANK[b] <= RANK[a] for a, b in zip(chain, chain[1:])):
        raise ValueError(f"chain: need at least two stages in funnel order {list(FUNNEL)}, got {chain}")
    ids = _check_leads(leads, need_created=within_days is not None or by == MONTH)
    mask = None if matured is None else _mask(matured, len(ids), "matured")
    reached = reached_stages(stages, leads, within_days)
    table = _pair_counts(reached, _group_keys(leads, by), mask, list(zip(chain, chain[1:])), confidence)
    return _with_group(table[["group", *COUNT_COLUMNS]], by)


def monthly_rates(
    stages: pd.DataFrame, leads: pd.DataFrame, matured: Any = None, within_days: float | None = None,
) -> pd.DataFrame:
    """Per creation month: lead_to_mql, mql_to_sql and sql_to_customer rates (NaN: no denominator).

    With `matured`, sql_to_customer counts matured leads only, so the latest months show
    their top-of-funnel rates and leave the customer rate empty until they mature.
    """
    counts = conversion_counts(stages, leads, PLAN_CHAIN, by=MONTH, matured=matured, within_days=within_days)
    counts["step"] = counts["from_stage"] + "_to_" + counts["to_stage"]
    wide = counts.pivot(index=MONTH, columns="step", values="rate")
    columns = [f"{a}_to_{b}" for a, b in zip(PLAN_CHAIN, PLAN_CHAIN[1:])]
    return wide.reindex(columns=columns).reset_index().rename_axis(columns=None)


# ---------------------------------------------------------------------------------------------
# Follow-up SLA and durations
# ---------------------------------------------------------------------------------------------

def _quantiles(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(np.median(values)), float(np.quantile(values, 0.9))


def _share(k: int, n: int, confidence: float) -> dict[str, float]:
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
    confidence = _check_confidence(confidence)
    hours = list(sla_hours)
    if not hours or any(not isinstance(h, (int, float)) or isinstance(h, bool) or not h > 0 for h in hours):
        raise ValueError(f"sla_hours: need one or more positive numbers of hours, got {sla_hours!r}")
    _check_stages(stages)
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
    median, p90 = _quantiles(waited)
    return {
        "as_of": as_of,
        "mqls": int(len(mql_at)),
        "mqls_not_yet_due": int(len(mql_at) - n),
        "mqls_due": n,
        "accepted": {"mqls": accepted, **_share(accepted, n, confidence)},
        "followed_up": {"mqls": int(len(nxt)), **_share(len(nxt), n, confidence)},
        "hours_to_next_stage": {"mqls": int(len(nxt)), "median": median, "p90": p90},
        "next_stage": {stage: int(count) for stage, count in nxt["stage"].value_counts().sort_index().items()},
        "within_sla": [
            {"hours": h, "mqls": int(np.sum(waited <= h)), **_share(int(np.sum(waited <= h)), n, confidence)}
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
        median, p90 = _quantiles(days)
        out.append({"from_stage": frm, "to_stage": to, "leads": len(days), "median_days": median, "p90_days": p90,
                    "negative": int(np.sum(days < 0))})
    return pd.DataFrame(out, columns=["from_stage", "to_stage", "leads", "median_days", "p90_days", "negative"])


def _cycle(rows: pd.DataFrame) -> dict[str, Any]:
    lead = rows[rows["stage"] == FUNNEL[0]].set_index("lead_id")["entered_at"]
    won = rows[rows["stage"] == WON_STAGE].set_index("lead_id")["entered_at"]
    won = won[won.index.isin(lead.index)]
    days = ((won - lead.reindex(won.index)) / DAY).to_numpy(dtype=float)
    median, p90 = _quantiles(days)
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
    _check_stages(stages)
    rows = stages.loc[stages["stage"].isin(FUNNEL)].copy()
    group_of: pd.Series | None = None
    if leads is not None:
        ids = _check_leads(leads, need_created=True)
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


# ---------------------------------------------------------------------------------------------
# Rejected MQLs: feedback to marketing
# ---------------------------------------------------------------------------------------------

def mql_outcomes(stages: pd.DataFrame, lead_ids: Sequence[str] | pd.Index) -> pd.DataFrame:
    """Per lead (index = lead_ids, in order): `mql` (reached mql) and `rejected`.

    Rejected by sales = reached mql, then `lost` (at or after its first stage from mql on),
    without ever reaching sql. A lead lost before it became an MQL is not a rejected MQL.
    """
    _check_stages(stages)
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
    confidence = _check_confidence(confidence)
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
        if "signal" not in catalog.columns:
            raise ValueError(f"catalog: missing column 'signal'; found {list(catalog.columns)}")
        extra = [c for c in catalog.columns if c != "signal" and c not in table.columns]
        table = table.merge(catalog[["signal", *extra]].drop_duplicates("signal"), on="signal", how="left")
        table = table[["signal", *extra, *(c for c in table.columns if c not in extra and c != "signal")]]
    table = table.sort_values(["low", "rejected", "signal"], ascending=[False, False, True], na_position="last",
                              kind="stable").reset_index(drop=True)
    overall_low, overall_high = wilson_interval(np.array([total_rejected]), np.array([total]), confidence)
    return {
        "overall": {"mqls": total, "rejected": total_rejected, "rate": overall_rate,
                    "low": float(overall_low[0]), "high": float(overall_high[0])},
        "signals": table,
    }


# ---------------------------------------------------------------------------------------------
# Volume planning
# ---------------------------------------------------------------------------------------------

def _whole(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    return int(value)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _ceil(value: float) -> int:
    """Round up, ignoring float noise (3 / 0.6 = 5.000000000000001 needs 5, not 6)."""
    up = math.ceil(value)
    return up - 1 if math.isclose(value, up - 1, rel_tol=1e-9, abs_tol=0.0) else up


def _plan_steps(rates: Any) -> list[tuple[str, str, int, int]]:
    """(from, to, successes, trials) per step, ordered from the top of the funnel down."""
    if isinstance(rates, pd.DataFrame):
        missing = [c for c in ("from_stage", "to_stage", "successes", "trials") if c not in rates.columns]
        if missing:
            raise ValueError(f"rates: missing column(s) {missing}; found {list(rates.columns)}")
        raw = [(str(r.from_stage), str(r.to_stage), r.successes, r.trials) for r in rates.itertuples(index=False)]
    elif isinstance(rates, Mapping):
        raw = []
        for key, value in rates.items():
            if isinstance(key, tuple) and len(key) == 2:
                frm, to = key
            elif isinstance(key, str) and key.count("->") == 1:
                frm, to = (part.strip() for part in key.split("->"))
            else:
                raise ValueError(f"rates: step {key!r} must be 'from->to' (e.g. 'sql->customer') or a (from, to) pair")
            if isinstance(value, Mapping):
                value = (value.get("successes"), value.get("trials"))
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(f"rates: step {key!r} needs (successes, trials), got {value!r}")
            raw.append((str(frm), str(to), value[0], value[1]))
    else:
        raise ValueError("rates: expected a mapping {'from->to': (successes, trials)} or a DataFrame from conversion_counts")
    if not raw:
        raise ValueError("rates: no steps given")
    steps = []
    for frm, to, successes, trials in raw:
        name = f"{frm}->{to}"
        if frm == to or not frm or not to:
            raise ValueError(f"rates: step '{name}' must go from one stage to another")
        s, t = _whole(successes, f"rates['{name}'] successes"), _whole(trials, f"rates['{name}'] trials")
        if t <= 0:
            raise ValueError(f"rates: step '{name}' has {t} trials; a rate needs at least one")
        if not 0 <= s <= t:
            raise ValueError(f"rates: step '{name}' has {s} successes for {t} trials; need 0 <= successes <= trials")
        if s == 0:
            raise ValueError(
                f"rates: step '{name}' converted 0 of {t}: with a measured rate of 0 no volume is enough; "
                f"measure over a longer period or a broader group"
            )
        steps.append((frm, to, s, t))
    starts = [s[0] for s in steps]
    ends = [s[1] for s in steps]
    if len(set(starts)) != len(starts) or len(set(ends)) != len(ends):
        raise ValueError(f"rates: each stage may start and end one step only; got {[f'{a}->{b}' for a, b, *_ in steps]}")
    heads = [s for s in steps if s[0] not in ends]
    if len(heads) != 1:
        raise ValueError(f"rates: the steps must form one chain (a->b, b->c, ...); got {[f'{a}->{b}' for a, b, *_ in steps]}")
    by_start = {s[0]: s for s in steps}
    chain = [heads[0]]
    while chain[-1][1] in by_start:
        chain.append(by_start[chain[-1][1]])
    if len(chain) != len(steps):
        raise ValueError(f"rates: the steps must form one chain (a->b, b->c, ...); got {[f'{a}->{b}' for a, b, *_ in steps]}")
    return chain


def plan_volume(
    rates: Any, customers: Any = None, revenue: Any = None, average_deal: Any = None,
    confidence: float = 0.95, simulations: int = 2000, seed: int = 0,
) -> dict[str, Any]:
    """How many of each stage it takes to win `customers` (or revenue / average_deal, rounded up).

    rates: measured counts per step, as {'lead->mql': (successes, trials), 'mql->sql': ...,
    'sql->customer': ...} (keys may also be (from, to) pairs) or the DataFrame of
    `conversion_counts` for one group. The steps must chain; the last step's target is the
    stage `customers` counts. Visitors are planned only if a 'visitor->lead' step is given.

    Point estimate: needed at stage j = customers / (product of the measured rates
    successes / trials from j down), rounded up. Interval: each step's rate is drawn
    `simulations` times from its Beta(successes + 1, trials - successes + 1) posterior
    (uniform prior; numpy Generator seeded with `seed`), the draws are propagated the same
    way, and the (1 - confidence) / 2 and 1 - (1 - confidence) / 2 quantiles of the needed
    volumes are reported, rounded up (2.5 % and 97.5 % at confidence 0.95).

    Returns {"target_stage", "customers", "revenue", "average_deal", "confidence",
             "simulations", "seed", "steps": [{from_stage, to_stage, successes, trials, rate}],
             "volumes": [{stage, needed, needed_exact, low, high}] from the top of the funnel
             down to the target stage}.
    """
    if (customers is None) == (revenue is None):
        raise ValueError("give exactly one of customers or revenue (with average_deal)")
    if customers is not None:
        if average_deal is not None:
            raise ValueError("average_deal is only used with revenue; with customers leave it out")
        target = _whole(customers, "customers")
        if target <= 0:
            raise ValueError(f"customers must be a positive whole number, got {customers!r}")
    else:
        if average_deal is None:
            raise ValueError("revenue needs average_deal (revenue / average_deal = customers to win)")
        revenue = _positive(revenue, "revenue")
        average_deal = _positive(average_deal, "average_deal")
        target = _ceil(revenue / average_deal)
    confidence = _check_confidence(confidence)
    simulations = _whole(simulations, "simulations")
    if simulations < 100:
        raise ValueError(f"simulations must be at least 100 for stable quantiles, got {simulations}")
    seed = _whole(seed, "seed")
    steps = _plan_steps(rates)
    successes = np.array([s[2] for s in steps], dtype=float)
    trials = np.array([s[3] for s in steps], dtype=float)
    point_rates = successes / trials
    rng = np.random.default_rng(seed)
    draws = rng.beta(successes + 1, trials - successes + 1, size=(simulations, len(steps)))
    draws = np.maximum(draws, np.finfo(float).tiny)
    # needed at the start of step j = target / prod(rates j..end): products from the bottom up
    point_needed = target / np.cumprod(point_rates[::-1])[::-1]
    simulated = target / np.cumprod(draws[:, ::-1], axis=1)[:, ::-1]
    alpha = 1 - confidence
    low_q, high_q = np.quantile(simulated, [alpha / 2, 1 - alpha / 2], axis=0)
    volumes = [
        {"stage": frm, "needed": _ceil(float(p)), "needed_exact": float(p), "low": _ceil(float(lo)), "high": _ceil(float(hi))}
        for (frm, *_), p, lo, hi in zip(steps, point_needed, low_q, high_q)
    ]
    volumes.append({"stage": steps[-1][1], "needed": target, "needed_exact": float(target), "low": target, "high": target})
    return {
        "target_stage": steps[-1][1],
        "customers": target,
        "revenue": revenue,
        "average_deal": average_deal,
        "confidence": confidence,
        "simulations": simulations,
        "seed": seed,
        "steps": [{"from_stage": a, "to_stage": b, "successes": s, "trials": t, "rate": s / t} for a, b, s, t in steps],
        "volumes": volumes,
    }


# ---------------------------------------------------------------------------------------------
# The stage: I/O
# ---------------------------------------------------------------------------------------------

TOP_REJECTION_SIGNALS = 15


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict(orient="records")


def segment_attributes(leads: pd.DataFrame, params: Params) -> list[str]:
    """The attributes the funnel is broken down by: params funnel.segments, or (null) every fit
    attribute the leads have, source aside (the funnel is always broken down by source)."""
    if params.funnel.segments is not None:
        return list(params.funnel.segments)
    return [a for a in params.signals.fit_attributes if a in leads.columns and a != "source"]


def _segments(leads: pd.DataFrame, params: Params) -> dict[str, pd.DataFrame]:
    """The leads with each segment attribute readable: numeric ones in their bands, missing as 'unknown'."""
    out = {}
    for attribute in segment_attributes(leads, params):
        if attribute not in leads.columns:
            log.warning("funnel: segment '%s' is not a lead column; skipped", attribute)
            continue
        edges = params.signals.numeric_bins.get(attribute)
        values = band(leads[attribute], edges) if edges else leads[attribute]
        out[attribute] = leads.assign(**{attribute: values})
    return out


def run(params: Params, sla_hours: list[int]) -> dict[str, Any]:
    """data/extracted (stages, leads) + data/features -> models/funnel.json and two plot CSVs.

    Needs models/signals.json (the close_rates stage) for the rejection feedback.
    Populations: the overall funnel, the funnel by source, the plan steps, durations and
    rejection feedback use matured leads only (every stage has had outcome.horizon_days to
    happen); the funnel by month uses all leads with the customer step on matured leads, so
    recent months show their top-of-funnel rates; the SLA uses every MQL old enough to be
    due. Stages count only within outcome.horizon_days of creation, so `customer` is
    `closed` of the features table.
    """
    paths = params.paths
    horizon = params.outcome.horizon_days
    confidence = params.close_rates.confidence
    stages = io.read_parquet(paths.extracted / "stages.parquet")
    leads = io.read_parquet(paths.extracted / "leads.parquet")
    features = io.read_parquet(paths.features / "features.parquet")
    snapshot = is_snapshot(features)
    # a snapshot export: every lead in it is decided, and nothing in it has a date (pipeline.design)
    export_date = None if snapshot else pd.Timestamp(io.read_json(paths.features / "features_report.json")["export_date"])

    # Matured as in the features stage; every lead counts here, also one decided before its first snapshot
    # (won at creation: no point-in-time row, but a lead of the funnel).
    matured = np.ones(len(leads), dtype=bool) if snapshot else \
        (leads["created_at"] + pd.Timedelta(days=horizon) <= export_date).to_numpy()
    matured_ids = pd.Index(leads.loc[matured, "lead_id"])
    if not matured.any():
        raise LeadcalError(
            f"{paths.features / 'features.parquet'}: no matured lead (older than horizon_days={horizon}); "
            f"funnel rates toward customer are unknown"
        )
    matured_leads = leads[matured].reset_index(drop=True)
    matured_stages = stages[stages["lead_id"].isin(matured_ids)]

    overall = funnel_conversion(stages, matured_leads, within_days=horizon, confidence=confidence)
    has_source = "source" in leads.columns
    by_source = funnel_conversion(stages, matured_leads, by="source", within_days=horizon, confidence=confidence) \
        if has_source else pd.DataFrame()
    plan_steps = conversion_counts(stages, matured_leads, PLAN_CHAIN, within_days=horizon, confidence=confidence)
    if snapshot:  # no months, no SLA clock, no durations: only what counts of leads say
        by_month, monthly = pd.DataFrame(), pd.DataFrame(columns=["month"])
        sla = {"note": f"not computed: {SNAPSHOT_NOTE}"}
        durations = {"transitions": pd.DataFrame(), "sales_cycle": {"note": f"not computed: {SNAPSHOT_NOTE}"}, "by": None}
    else:
        by_month = funnel_conversion(stages, leads, by=MONTH, matured=matured, within_days=horizon,
                                     confidence=confidence)
        monthly = monthly_rates(stages, leads, matured=matured, within_days=horizon)
        sla = sla_follow_up(stages, sla_hours, as_of=export_date, confidence=confidence)
        durations = stage_durations(matured_stages, matured_leads, by="source" if has_source else None)

    signals = build_signals(features, params, read_frequency_signals(paths.models))
    at = rows_at_mql(features, stages)
    matrix = signals.matrix.iloc[at].set_axis(pd.Index(features["lead_id"].iloc[at]), axis=0)
    rejection = rejection_feedback(stages, matrix, signals.catalog, confidence)

    payload = {
        "population": {
            "leads": int(len(leads)),
            "matured_leads": int(matured.sum()),
            "export_date": export_date,
            "mode": SNAPSHOT if snapshot else DATED,
            "horizon_days": horizon,
            "confidence": confidence,
            "funnel_order": list(FUNNEL),
            "note": (
                "A lead reached a stage if it has it or any later one (skipped stages count). "
                "funnel, by_source, plan_steps, durations and rejection_feedback use matured leads only; "
                "by_month uses all leads, its customer rows matured leads only; stages count within "
                "horizon_days of creation."
            ),
        },
        "funnel": _records(overall),
        "by_source": _records(by_source),
        "by_segment": {
            attribute: _records(funnel_conversion(stages, segmented, by=attribute, within_days=horizon, confidence=confidence))
            for attribute, segmented in _segments(matured_leads, params).items()
        },
        "by_month": _records(by_month),
        "plan_steps": _records(plan_steps),
        "sla": sla,
        "durations": {
            "transitions": _records(durations["transitions"]),
            "sales_cycle": durations["sales_cycle"],
            "by_source": None if durations["by"] is None else {
                "transitions": _records(durations["by"]["transitions"]),
                "sales_cycle": _records(durations["by"]["sales_cycle"]),
            },
        },
        "rejection_feedback": {
            "overall": rejection["overall"],
            "signals": _records(rejection["signals"].head(TOP_REJECTION_SIGNALS)),
            "signals_total": int(len(rejection["signals"])),
        },
    }
    io.write_json(paths.models / "funnel.json", payload)
    io.write_csv(paths.models / "plots" / "funnel.csv", overall[["stage", "leads", "rate_from_previous"]])
    io.write_csv(paths.models / "plots" / "funnel_by_month.csv", monthly)
    customers = overall.loc[overall["stage"] == WON_STAGE, "leads"].iloc[0]
    log.info(
        "funnel: %d matured leads -> %d customers (%.2f %%); %d MQLs, %.0f %% rejected by sales",
        int(matured.sum()), int(customers), 100 * customers / max(int(matured.sum()), 1),
        rejection["overall"]["mqls"], 100 * (rejection["overall"]["rate"] or 0),
    )
    return payload
