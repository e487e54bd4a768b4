"""Conversion through the funnel: leads reaching each stage and the rates, with Wilson intervals,
overall or per group; successes and trials for any chain of stages (the input of volume planning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.core.funnel.common import (
    COUNT_COLUMNS,
    FUNNEL,
    FUNNEL_COLUMNS,
    MONTH,
    PLAN_CHAIN,
    RANK,
    as_mask,
    check_confidence,
    check_leads,
    group_keys,
    pair_counts,
    reached_stages,
    with_group,
)


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
    confidence = check_confidence(confidence)
    ids = check_leads(leads, need_created=within_days is not None or by == MONTH)
    if len(ids) == 0:
        raise ValueError("leads: no leads, so there is no funnel")
    mask = None if matured is None else as_mask(matured, len(ids), "matured")
    reached = reached_stages(stages, leads, within_days)
    keys = group_keys(leads, by)
    steps = pair_counts(reached, keys, mask, list(zip(FUNNEL[:-1], FUNNEL[1:])), confidence)
    from_lead = pair_counts(reached, keys, mask, [(FUNNEL[0], s) for s in FUNNEL[1:]], confidence)
    top = reached.astype(np.int64).groupby(keys)[FUNNEL[0]].sum()
    later = _later_rows(steps, from_lead)
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
    return with_group(table, by)


def _later_rows(steps: pd.DataFrame, from_lead: pd.DataFrame) -> pd.DataFrame:
    """The rows of every stage after `lead`: each step's counts and rate from the previous stage,
    joined with the rate from the top (two pair_counts tables, one row per group and stage)."""
    step_rows = steps.rename(columns={
        "successes": "leads", "trials": "previous", "rate": "rate_from_previous",
        "low": "rate_from_previous_low", "high": "rate_from_previous_high", "to_stage": "stage",
    })
    lead_rows = from_lead.rename(columns={
        "trials": "base", "rate": "rate_from_lead", "low": "rate_from_lead_low", "high": "rate_from_lead_high",
        "to_stage": "stage",
    })[["group", "stage", "base", "rate_from_lead", "rate_from_lead_low", "rate_from_lead_high"]]
    return step_rows.merge(lead_rows, on=["group", "stage"], how="left", validate="one_to_one")


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
    confidence = check_confidence(confidence)
    chain = list(chain)
    unknown = [s for s in chain if s not in RANK]
    if unknown:
        raise ValueError(f"chain: unknown stage(s) {unknown}; the funnel is {list(FUNNEL)}")
    if len(chain) < 2 or any(RANK[b] <= RANK[a] for a, b in zip(chain, chain[1:])):
        raise ValueError(f"chain: need at least two stages in funnel order {list(FUNNEL)}, got {chain}")
    ids = check_leads(leads, need_created=within_days is not None or by == MONTH)
    mask = None if matured is None else as_mask(matured, len(ids), "matured")
    reached = reached_stages(stages, leads, within_days)
    table = pair_counts(reached, group_keys(leads, by), mask, list(zip(chain, chain[1:])), confidence)
    return with_group(table[["group", *COUNT_COLUMNS]], by)


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
